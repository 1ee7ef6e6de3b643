"""The tile ranges the kernels loop over (through their Python mirrors): complete, disjoint, and short.

The kernels' own use of these ranges is checked in test_sliding_window.py by poisoning
the tiles they must skip.
"""

import itertools

import pytest

from menagerie.kernels.attention import sliding_window_mask
from menagerie.kernels.attention.tile_ranges import (
    key_tile_ranges,
    query_tile_ranges,
    visited_key_tiles,
    visited_query_tiles,
)

SHAPES = [(1, 1), (33, 33), (100, 100), (33, 100), (100, 40), (7, 64)]
WINDOWS = [0, 1, 5, 17, 40, 1000, (3, 9), (-1, 8), (8, -1), (-1, -1), (0, 5), (20, 0)]
# (window, sinks, end sinks, causal); end sinks with a few sink counts, to keep the product small.
SETTINGS = list(itertools.product(WINDOWS, [0, 1, 4, 20, 200], [0], [True, False])) + list(
    itertools.product(WINDOWS, [0, 4], [1, 5, 40, 200], [True, False])
)
BLOCKS = [(16, 32), (32, 16), (64, 64)]


def clamped(q_len, kv_len, window, sinks, end_sinks, causal):
    """What the launcher passes the kernels: finite (left, right), right 0 when causal, sinks and end sinks
    <= kv_len."""
    left, right = (window, window) if isinstance(window, int) else window
    left, right = (q_len + kv_len if side < 0 else min(side, q_len + kv_len) for side in (left, right))
    return left, 0 if causal else right, min(sinks, kv_len), min(end_sinks, kv_len)


@pytest.mark.parametrize("block_m, block_n", BLOCKS)
def test_key_tiles_cover_every_visible_key_once_and_interior_tiles_are_whole(block_m, block_n):
    for (q_len, kv_len), (window, sinks, end_sinks, causal) in itertools.product(SHAPES, SETTINGS):
        mask = sliding_window_mask(q_len, kv_len, window, sinks, causal, end_sinks=end_sinks)
        visited = visited_key_tiles(q_len, kv_len, window, sinks, causal, block_m, block_n, end_sinks)
        left, right, s, e = clamped(q_len, kv_len, window, sinks, end_sinks, causal)
        for index, start_m in enumerate(range(0, q_len, block_m)):
            rows = mask[start_m : start_m + block_m]
            tiles = visited[index]
            assert len(set(tiles)) == len(tiles), "a key tile visited twice"
            assert all(t % block_n == 0 and 0 <= t < kv_len for t in tiles)
            needed = {int(j) // block_n * block_n for j in rows.any(dim=0).nonzero().flatten()}
            assert needed <= set(tiles), (q_len, kv_len, window, sinks, end_sinks, causal, start_m)
            assert all(rows[:, tile : tile + block_n].any() for tile in tiles), "a tile that no query of the block sees"
            first_pos = start_m + kv_len - q_len
            last_pos = min(start_m + block_m, q_len) - 1 + kv_len - q_len
            _, band_start, inner_start, inner_end, band_end, _, _ = key_tile_ranges(
                first_pos, last_pos, left, right, s, e, kv_len, block_n, causal
            )
            assert band_start <= inner_start <= inner_end <= band_end
            for tile in range(inner_start, inner_end, block_n):  # unmasked tiles: every key seen by every row
                assert tile + block_n <= kv_len and bool(rows[:, tile : tile + block_n].all())


@pytest.mark.parametrize("block_m, block_n", BLOCKS)
def test_query_tiles_cover_every_visible_query_and_interior_tiles_are_whole(block_m, block_n):
    for (q_len, kv_len), (window, sinks, end_sinks, causal) in itertools.product(SHAPES, SETTINGS):
        mask = sliding_window_mask(q_len, kv_len, window, sinks, causal, end_sinks=end_sinks)
        visited = visited_query_tiles(q_len, kv_len, window, sinks, causal, block_m, block_n, end_sinks)
        left, right, s, e = clamped(q_len, kv_len, window, sinks, end_sinks, causal)
        for index, start_n in enumerate(range(0, kv_len, block_n)):
            columns = mask[:, start_n : start_n + block_n]
            tiles = visited[index]
            assert len(set(tiles)) == len(tiles) and all(t % block_m == 0 and 0 <= t < q_len for t in tiles)
            needed = {int(i) // block_m * block_m for i in columns.any(dim=1).nonzero().flatten()}
            assert needed <= set(tiles), (q_len, kv_len, window, sinks, end_sinks, causal, start_n)
            assert all(columns[tile : tile + block_m].any() for tile in tiles), "a query tile that sees no key"
            last_key = min(start_n + block_n, kv_len) - 1
            start, inner_start, inner_end, end = query_tile_ranges(
                start_n, last_key, q_len, kv_len, left, right, s, e, block_m, causal
            )
            assert start <= inner_start <= inner_end <= end
            for tile in range(inner_start, inner_end, block_m):
                assert tile + block_m <= q_len and bool(columns[tile : tile + block_m].all())


def test_forward_visits_only_the_band_and_sink_tiles():
    # S=1024, W=64, 4 sinks, 64x64 tiles: a query block needs one sink tile and the two or
    # three tiles its band spans, never the 16 tiles of the whole sequence.
    block = 64
    visited = visited_key_tiles(1024, 1024, window=64, sinks=4, causal=True, block_m=block, block_n=block)
    assert max(len(tiles) for tiles in visited) <= 64 // block + 2 + 1
    assert all(tiles[0] == 0 for tiles in visited)  # the sink tile is always there
    for window in (64, 256):  # 128x64 tiling (the benchmark's), non-causal: ≤ (2W + BLOCK_M)/BLOCK_N + 2 + sinks
        for causal in (True, False):
            visited = visited_key_tiles(4096, 4096, window, sinks=4, causal=causal, block_m=128, block_n=64)
            span = (window if causal else 2 * window) + 128
            assert max(len(tiles) for tiles in visited) <= span // 64 + 2 + 1
    # Wide windows run mostly unmasked: at W=256 and 64x64 tiles, 3 of a query block's 5-6 band tiles.
    _, _, inner_start, inner_end, _, _, _ = key_tile_ranges(512, 575, 256, 0, 4, 0, 1024, 64, causal=True)
    assert (inner_end - inner_start) // 64 == 3
    dense = visited_key_tiles(1024, 1024, window=1024, sinks=0, causal=True, block_m=block, block_n=block)
    assert [len(tiles) for tiles in dense] == list(range(1, 17))  # the causal triangle


def test_backward_key_blocks_visit_only_the_queries_that_see_them():
    visited = visited_query_tiles(1024, 1024, window=64, sinks=4, causal=True, block_m=64, block_n=64)
    assert len(visited[0]) == 16  # the sink block: every query sees it
    assert max(len(tiles) for tiles in visited[1:]) <= 64 // 64 + 2
    no_sinks = visited_query_tiles(1024, 1024, window=64, sinks=0, causal=True, block_m=64, block_n=64)
    assert len(no_sinks[0]) <= 64 // 64 + 2


def test_asymmetric_windows_visit_only_their_side():
    # Window (0, 64) non-causal looks ahead only: a query block's tiles start at its own block.
    visited = visited_key_tiles(1024, 1024, window=(0, 64), sinks=0, causal=False, block_m=64, block_n=64)
    assert all(tiles[0] == index * 64 and len(tiles) <= 2 for index, tiles in enumerate(visited))
    behind = visited_query_tiles(1024, 1024, window=(64, 0), sinks=0, causal=False, block_m=64, block_n=64)
    assert all(tiles[0] == index * 64 and len(tiles) <= 2 for index, tiles in enumerate(behind))


def test_end_sinks_add_only_their_own_tiles():
    # S=1024, W=64, non-causal, one sink at each end (BERT's [CLS] and [SEP]), 64x64 tiles: a query block
    # needs the first tile, its band's two or three tiles and the last tile, never the tiles between.
    visited = visited_key_tiles(1024, 1024, window=64, sinks=1, causal=False, block_m=64, block_n=64, end_sinks=1)
    assert all(tiles[0] == 0 and tiles[-1] == 960 for tiles in visited)
    assert max(len(tiles) for tiles in visited) <= 2 * 64 // 64 + 1 + 2
    # Causal: an end sink is seen only from its own position on, so only the last query block visits it.
    causal = visited_key_tiles(1024, 1024, window=64, sinks=0, causal=True, block_m=64, block_n=64, end_sinks=1)
    assert [960 in tiles for tiles in causal] == [False] * 15 + [True]
    # dk/dv: the block holding the end sink is seen by every query block (non-causal).
    behind = visited_query_tiles(1024, 1024, window=64, sinks=0, causal=False, block_m=64, block_n=64, end_sinks=1)
    assert len(behind[-1]) == 16 and max(len(tiles) for tiles in behind[:-1]) <= 64 // 64 + 2
