"""Which key tiles a query block visits, and which query tiles a key block's dk/dv visits.

The kernels compute their loop bounds with ``_key_tile_ranges`` and ``_query_tile_ranges`` in
``sliding_window.py``; the functions here mirror them in Python for the tests and the
benchmark's cost model. ``KeyTiles`` names the key-tile bounds, for the kernels and the mirror
alike: the sink tiles start in ``[0, sink_end)``, the band tiles in ``[band_start, band_end)``
and the end-sink tiles in ``[end_start, end_stop)``; those starting in ``[inner_start,
inner_end)`` are seen whole by every query of the block (no element mask).
"""

from typing import NamedTuple

from menagerie.kernels.attention.mask import effective_window


class KeyTiles(NamedTuple):
    sink_end: int
    band_start: int
    inner_start: int
    inner_end: int
    band_end: int
    end_start: int
    end_stop: int


def clamped_settings(
    q_len: int, kv_len: int, window, sinks: int, causal: bool, end_sinks: int = 0
) -> tuple[int, int, int, int]:
    """The launcher's ``(window_left, window_right, sinks, end_sinks)``: finite, causal right 0, sinks and
    end sinks at most ``kv_len``; the mask is unchanged (``|pos - j| < Sq + Sk``) and the kernels' arithmetic
    int32-safe."""
    return (*effective_window(window, causal, q_len, kv_len), min(sinks, kv_len), min(end_sinks, kv_len))


def key_tile_ranges(
    first_pos: int,
    last_pos: int,
    window_left: int,
    window_right: int,
    sinks: int,
    end_sinks: int,
    kv_len: int,
    block_n: int,
    causal: bool,
) -> KeyTiles:
    """Python mirror of the kernels' ``_key_tile_ranges``."""
    low, inner_low = max(first_pos - window_left, 0), max(last_pos - window_left, 0)
    high = last_pos + window_right + 1
    if not causal:
        high = max(high, sinks)
    high = min(max(high, 0), kv_len)
    inner_high = min(max(first_pos + window_right + 1, 0), kv_len)
    end_low = max(kv_len - end_sinks, 0)
    band_start = min(low, end_low) // block_n * block_n
    inner_start = min(-(-inner_low // block_n) * block_n, high)
    inner_end = max(inner_high // block_n * block_n, inner_start)
    band_tiles_end = max(-(-high // block_n) * block_n, band_start)
    end_start = max(end_low // block_n * block_n, band_tiles_end)
    end_stop = kv_len if end_low < kv_len else 0
    if causal:
        end_stop = min(end_stop, max(last_pos + 1, 0))
    return KeyTiles(min(sinks, band_start, high), band_start, inner_start, inner_end, high, end_start, end_stop)


def query_tile_ranges(
    start_n: int,
    last_key: int,
    q_len: int,
    kv_len: int,
    window_left: int,
    window_right: int,
    sinks: int,
    end_sinks: int,
    block_m: int,
    causal: bool,
) -> tuple[int, int, int, int]:
    """Python mirror of the kernels' ``_query_tile_ranges``: ``(query_start, inner_start, inner_end, query_end)``."""
    offset = kv_len - q_len
    low, inner_low = start_n - window_right - offset, last_key - window_right - offset
    high, inner_high = last_key + window_left + 1 - offset, start_n + window_left + 1 - offset
    if start_n < sinks or last_key >= kv_len - end_sinks:
        high = q_len
        if not causal:
            low = 0
    low, high, inner_low, inner_high = (min(max(x, 0), q_len) for x in (low, high, inner_low, inner_high))
    inner_start = min(-(-inner_low // block_m) * block_m, high)
    return low // block_m * block_m, inner_start, max(inner_high // block_m * block_m, inner_start), high


def visited_key_tiles(
    q_len: int, kv_len: int, window, sinks: int, causal: bool, block_m: int, block_n: int, end_sinks: int = 0
) -> list[list[int]]:
    """Start of every key tile that each query block visits, forward and dq (sink tiles, band tiles, then
    end-sink tiles)."""
    left, right, sinks, end_sinks = clamped_settings(q_len, kv_len, window, sinks, causal, end_sinks)
    visited = []
    for start_m in range(0, q_len, block_m):
        first_pos = start_m + kv_len - q_len
        last_pos = min(start_m + block_m, q_len) - 1 + kv_len - q_len
        tiles = key_tile_ranges(first_pos, last_pos, left, right, sinks, end_sinks, kv_len, block_n, causal)
        visited.append(
            list(range(0, tiles.sink_end, block_n))
            + list(range(tiles.band_start, tiles.band_end, block_n))
            + list(range(tiles.end_start, tiles.end_stop, block_n))
        )
    return visited


def visited_query_tiles(
    q_len: int, kv_len: int, window, sinks: int, causal: bool, block_m: int, block_n: int, end_sinks: int = 0
) -> list[list[int]]:
    """Start of every query tile that each key block's dk/dv visits (per query head of its group)."""
    left, right, sinks, end_sinks = clamped_settings(q_len, kv_len, window, sinks, causal, end_sinks)
    visited = []
    for start_n in range(0, kv_len, block_n):
        last_key = min(start_n + block_n, kv_len) - 1
        start, _, _, end = query_tile_ranges(
            start_n, last_key, q_len, kv_len, left, right, sinks, end_sinks, block_m, causal
        )
        visited.append(list(range(start, end, block_m)))
    return visited
