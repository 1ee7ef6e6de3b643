"""Sliding-window attention with sink tokens in Triton, forward and backward, dense or packed.

Semantics (shared with ``mask.py`` and ``reference.py``): q ``(B, H, Sq, D)``, k and
v ``(B, Hkv, Sk, D)`` with ``H % Hkv == 0`` (query head ``h`` reads key/value head
``h // (H // Hkv)``). Query ``i`` sits at key position ``pos(i) = i + Sk - Sq``
(bottom-right alignment). ``window`` is an int ``W`` (the pair ``(W, W)``) or a pair
``(left, right)`` with FlashAttention's ``window_size`` meaning: key ``j`` is in the band
of query ``i`` when ``pos(i) - left <= j <= pos(i) + right``, -1 leaving a side
unbounded. Key ``j`` is visible when it is in the band, ``j < sinks`` (the first keys)
or ``j >= Sk - end_sinks`` (the last keys), and, when causal, only if ``j <= pos(i)``
(causal turns ``right`` into 0, and an end sink is seen only by the queries at or after
it): ``window=W, causal=True`` shows ``W + 1`` keys, like FlashAttention's
``window_size=(W, 0)``. With ``softcap > 0`` each scaled score ``s`` becomes
``softcap * tanh(s / softcap)`` before the softmax. A query that sees no key outputs 0,
its log-sum-exp is -inf (log of an empty sum; FlashAttention 2 writes +inf there) and its
gradients are 0. fp32, fp16 and bf16 (fp32 matmuls run in full IEEE precision, not
TF32); D any multiple of 8 up to 256 (padded inside the kernels to the next power of
two, at least 16). Inputs may be strided along batch, heads and length; a tensor whose
last dimension is not contiguous is copied first. The log-sum-exp output (natural log,
float32) is differentiable too.

Packed sequences (``sliding_window_attention_varlen``, FlashAttention's varlen layout):
q ``(total_q, H, D)``, k, v ``(total_k, Hkv, D)``, sequence ``b`` on rows
``cu_seqlens[b]:cu_seqlens[b + 1]``; each sequence is attended on its own, as if it were
a batch element (positions, alignment, sinks and end sinks per sequence: a padded BERT
batch's trailing [SEP] is each sequence's last key). The same kernels run it
(``IS_VARLEN``): a program reads its sequence's bounds from ``cu_seqlens``, so a tile
never holds rows of two sequences, and programs past a shorter sequence's end exit.

Work grows with the window, not with the square of the sequence: a query block
visits the sink tiles that lie before its band (keys ``[0, sinks)``), then the key
tiles of its band, then the end-sink tiles after it (keys ``[Sk - end_sinks, Sk)``),
and never a tile that no query of the block can see. Inside the band, tiles that every
query of the block sees whole skip the element mask. The backward recomputes
probabilities from the log-sum-exp saved by the forward (FlashAttention-2): a
preprocessing kernel forms ``delta = rowsum(dO * O)``; a dk/dv kernel per key block
visits the query blocks that see it (all of them for a block that holds sinks or end
sinks), looping over the query heads of its GQA group so that
dk/dv are summed without atomics; a dq kernel per query block iterates like the
forward. Softmax runs in base 2 with the scale folded into the scores.

The key/query tile ranges are computed by ``_key_tile_ranges``/``_query_tile_ranges``
in the kernels and mirrored in Python by ``tile_ranges.py`` (used by the tests and the
benchmark's cost model); the input checks are in ``checks.py``.

This file reads in one order: the tilings, the jit helpers and kernels (forward, then
backward), their launchers, the autograd ``Function`` and the public functions.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from menagerie.kernels.attention.checks import check_attention_inputs, check_cu_seqlens, check_settings, check_tensors
from menagerie.kernels.attention.tile_ranges import KeyTiles, clamped_settings
from menagerie.kernels.targets import INTERPRETING, max_shared_memory
from menagerie.kernels.tiles import tiling
from menagerie.kernels.validate import dot_precision

LOG2E = 1.4426950408889634  # log2(e): exp(x) = exp2(x * LOG2E)
LN2 = 0.6931471805599453
KEY_SEGMENTS = tl.constexpr(5)  # the key tiles a query block visits, in order (``_key_segment``); 2 is unmasked


# GPU tilings per (precision, head-dim bucket), chosen from
# `menagerie compile`'s report: each list holds configurations that are spill-free on sm_80 and
# sm_90 for the benchmark cases (the autotuner times them all on the GPU). The backward holds two
# accumulators (dk and dv, or dq beside q and dO): smaller key blocks, single-stage dk/dv at D 128.
# fp32 multiplies in IEEE precision, which unrolls each dot into FMAs: small tiles only.
# Under Triton 3.6, ptxas gives the fp32 kernels at D 96-256 a small stack frame in some tilings (the
# padded, varlen and softcapped variants each in different ones): the longer fp32 lists keep a spill-free
# tiling for every variant on sm_80 and sm_90 under both Triton versions.
# In the dk/dv kernel BLOCK_M is the query tile of the inner loop and BLOCK_N the key block.
FWD_TILES = {
    ("half", 64): [
        tiling(BLOCK_M=128, BLOCK_N=64, warps=4, stages=3),
        tiling(BLOCK_M=128, BLOCK_N=128, warps=8, stages=2),
        tiling(BLOCK_M=64, BLOCK_N=64, warps=4, stages=3),
        tiling(BLOCK_M=128, BLOCK_N=32, warps=4, stages=3),
        tiling(BLOCK_M=64, BLOCK_N=32, warps=4, stages=2),
    ],
    ("half", 128): [
        tiling(BLOCK_M=128, BLOCK_N=64, warps=8, stages=2),
        tiling(BLOCK_M=128, BLOCK_N=32, warps=8, stages=2),
        tiling(BLOCK_M=64, BLOCK_N=128, warps=8, stages=2),
        tiling(BLOCK_M=64, BLOCK_N=64, warps=4, stages=2),
        tiling(BLOCK_M=64, BLOCK_N=32, warps=4, stages=2),
    ],
    # The last: the softcapped forward at D 256 spills in the others on sm_80 under Triton 3.6.
    ("half", 256): [
        tiling(BLOCK_M=64, BLOCK_N=32, warps=4, stages=2),
        tiling(BLOCK_M=64, BLOCK_N=64, warps=8, stages=2),
        tiling(BLOCK_M=128, BLOCK_N=32, warps=8, stages=2),
        tiling(BLOCK_M=64, BLOCK_N=32, warps=8, stages=2),
    ],
    ("fp32", 64): [
        tiling(BLOCK_M=32, BLOCK_N=32, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=32, warps=4, stages=1),
        tiling(BLOCK_M=32, BLOCK_N=16, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=4, stages=1),
    ],
    ("fp32", 128): [
        tiling(BLOCK_M=32, BLOCK_N=16, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=4, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=32, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=2, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=4, stages=2),
    ],
    ("fp32", 256): [
        tiling(BLOCK_M=16, BLOCK_N=16, warps=4, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=8, stages=1),
    ],
}
DQ_TILES = {
    ("half", 64): [
        tiling(BLOCK_M=128, BLOCK_N=64, warps=8, stages=2),
        tiling(BLOCK_M=64, BLOCK_N=64, warps=4, stages=2),
        tiling(BLOCK_M=64, BLOCK_N=32, warps=4, stages=2),
    ],
    ("half", 128): [
        tiling(BLOCK_M=128, BLOCK_N=64, warps=8, stages=2),
        tiling(BLOCK_M=128, BLOCK_N=32, warps=8, stages=2),
        tiling(BLOCK_M=64, BLOCK_N=64, warps=8, stages=2),
        tiling(BLOCK_M=64, BLOCK_N=32, warps=4, stages=2),
    ],
    ("half", 256): [
        tiling(BLOCK_M=64, BLOCK_N=32, warps=4, stages=2),
        tiling(BLOCK_M=32, BLOCK_N=32, warps=4, stages=2),
        tiling(BLOCK_M=64, BLOCK_N=32, warps=8, stages=2),
    ],
    ("fp32", 64): [
        tiling(BLOCK_M=16, BLOCK_N=32, warps=8, stages=1),
        tiling(BLOCK_M=32, BLOCK_N=16, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=4, stages=1),
    ],
    ("fp32", 128): [
        tiling(BLOCK_M=32, BLOCK_N=16, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=4, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=32, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=2, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=4, stages=2),
    ],
    ("fp32", 256): [
        tiling(BLOCK_M=16, BLOCK_N=16, warps=4, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=2, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=4, stages=2),
    ],
}
DKDV_TILES = {
    ("half", 64): [
        tiling(BLOCK_M=32, BLOCK_N=64, warps=4, stages=2),
        tiling(BLOCK_M=32, BLOCK_N=64, warps=4, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=64, warps=4, stages=2),
        tiling(BLOCK_M=32, BLOCK_N=32, warps=4, stages=2),
    ],
    ("half", 128): [
        tiling(BLOCK_M=32, BLOCK_N=64, warps=8, stages=1),
        tiling(BLOCK_M=32, BLOCK_N=32, warps=4, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=64, warps=4, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=128, warps=8, stages=2),
        tiling(BLOCK_M=16, BLOCK_N=32, warps=4, stages=1),
    ],
    ("half", 256): [
        tiling(BLOCK_M=16, BLOCK_N=32, warps=4, stages=1),
        tiling(BLOCK_M=32, BLOCK_N=32, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=64, warps=8, stages=1),
    ],
    ("fp32", 64): [
        tiling(BLOCK_M=16, BLOCK_N=32, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=8, stages=1),
    ],
    ("fp32", 128): [
        tiling(BLOCK_M=16, BLOCK_N=32, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=4, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=2, stages=1),
        tiling(BLOCK_M=32, BLOCK_N=16, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=4, stages=2),
    ],
    ("fp32", 256): [
        tiling(BLOCK_M=16, BLOCK_N=16, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=4, stages=1),
        tiling(BLOCK_M=16, BLOCK_N=16, warps=2, stages=1),
    ],
}


def _tile_key(config: triton.Config) -> tuple[int, int, int, int]:
    return config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"], config.num_warps, config.num_stages


def _tuning(tiles: dict, shared_bytes) -> tuple[list, dict]:
    """Autotuner configurations and their pruning: only the tilings listed for the call's precision
    and head dim, and of those only the ones whose staged tiles fit the device's shared memory
    (``shared_bytes(block_m, block_n, stages, padded_head_dim, itemsize)``, an upper estimate)."""
    configs = list({_tile_key(tile): tile for listed in tiles.values() for tile in listed}.values())

    def prune(configs, named_args, **kwargs):
        # Keyed by the padded head dim's bucket (64 holds 16 and 32); tiles are staged padded too.
        head_dim, itemsize = kwargs["BLOCK_D"], named_args["q_ptr"].element_size()
        listed = {_tile_key(tile) for tile in tiles[("fp32" if itemsize == 4 else "half", max(64, head_dim))]}
        chosen = [c for c in configs if _tile_key(c) in listed]
        limit = max_shared_memory()
        fitting = [
            c
            for c in chosen
            if shared_bytes(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_stages, head_dim, itemsize) <= limit
        ]
        return fitting or chosen[-1:]

    return configs, {"early_config_prune": prune}


if INTERPRETING:
    # The interpreter cannot time configurations: one small tiling each, with BLOCK_M != BLOCK_N
    # so that a swapped block size cannot go unnoticed in the tests.
    FWD_CONFIGS, FWD_PRUNE = [tiling(BLOCK_M=16, BLOCK_N=32, warps=4, stages=1)], None
    DQ_CONFIGS, DQ_PRUNE = [tiling(BLOCK_M=16, BLOCK_N=32, warps=4, stages=1)], None
    DKDV_CONFIGS, DKDV_PRUNE = [tiling(BLOCK_M=32, BLOCK_N=16, warps=4, stages=1)], None
    PREPROCESS_BLOCK = 16
else:
    # Staged tiles: k and v per stage (forward, dq) or q and dO per stage (dk/dv), plus the tiles held.
    FWD_CONFIGS, FWD_PRUNE = _tuning(FWD_TILES, lambda m, n, stages, d, size: (2 * stages * n + m) * d * size)
    DQ_CONFIGS, DQ_PRUNE = _tuning(DQ_TILES, lambda m, n, stages, d, size: (2 * stages * n + 2 * m) * d * size)
    DKDV_CONFIGS, DKDV_PRUNE = _tuning(DKDV_TILES, lambda m, n, stages, d, size: (2 * stages * m + 2 * n) * d * size)
    PREPROCESS_BLOCK = 64
# Re-tune when the shape class changes; lengths only by power-of-two bucket. Dtypes are keyed automatically.
AUTOTUNE_KEY = [
    "HEAD_DIM",
    "CAUSAL",
    "SOFTCAP",
    "IS_VARLEN",
    "window_left",
    "window_right",
    "sinks",
    "end_sinks",
    "group",
    "seq_bucket",
]


# ----------------------------------------------------------------------------------------------
# Shared pieces: sequences, visibility, softcap and tile ranges
# ----------------------------------------------------------------------------------------------


@triton.jit
def _sequence(cu_seqlens_q_ptr, cu_seqlens_k_ptr, batch, q_len, kv_len, IS_VARLEN: tl.constexpr):
    """First row and length of batch element ``batch``'s queries and keys: ``(q_start, q_len, k_start,
    kv_len)``. Dense: rows from 0, the launch's lengths. Packed: read from ``cu_seqlens``."""
    q_start = 0
    k_start = 0
    if IS_VARLEN:
        q_start = tl.load(cu_seqlens_q_ptr + batch)
        q_len = tl.load(cu_seqlens_q_ptr + batch + 1) - q_start
        k_start = tl.load(cu_seqlens_k_ptr + batch)
        kv_len = tl.load(cu_seqlens_k_ptr + batch + 1) - k_start
        q_start = q_start.to(tl.int64)
        k_start = k_start.to(tl.int64)
    return q_start, q_len, k_start, kv_len


@triton.jit
def _visible(
    pos,
    keys,
    window_left,
    window_right,
    sinks,
    end_sinks,
    kv_len,
    CAUSAL: tl.constexpr,
    HAS_END_SINKS: tl.constexpr,
):
    """Mask of the visible (position, key) pairs; ``pos`` and ``keys`` broadcast (either may be the column).
    Mirrors ``mask.visible``, the one definition of the predicate."""
    distance = pos - keys
    seen = ((distance <= window_left) & (distance >= -window_right)) | (keys < sinks)
    if HAS_END_SINKS:
        seen = seen | (keys >= kv_len - end_sinks)
    if CAUSAL:
        seen = seen & (distance >= 0)
    return seen & (keys < kv_len)


@triton.jit
def _tanh(x):
    """tanh to a few float32 ulps relative (Triton's interpreter has no tanh): ``(1 - e) / (1 + e)`` with
    ``e = exp(-2|x|)`` loses relative precision as |x| -> 0 (1 - e cancels), so below 0.1 its Taylor
    series (to x^7, truncation < 1e-9 relative) takes over. A large cap keeps s/cap small: both matter."""
    a = tl.abs(x)
    e = tl.exp2(a * -2.8853900817779268)  # -2 * log2(e); underflows to 0 for large |x|: tanh = 1
    t = (1.0 - e) / (1.0 + e)
    a2 = a * a
    series = a * (1.0 + a2 * (-0.3333333333333333 + a2 * (0.13333333333333333 + a2 * -0.05396825396825397)))
    t = tl.where(a < 0.1, series, t)
    return tl.where(x < 0, -t, t)


@triton.jit
def _query_program(heads, group, q_len, BLOCK_M: tl.constexpr):
    """One program per (query block, batch·head) on a 1-D grid (no 65535 limit on batch·heads);
    the batch·head index is 64-bit so base offsets may pass 2**31. ``q_len``: the longest sequence."""
    q_blocks = (q_len + BLOCK_M - 1) // BLOCK_M
    pid = tl.program_id(0)
    bh = (pid // q_blocks).to(tl.int64)
    start_m = (pid % q_blocks) * BLOCK_M
    batch, head = bh // heads, bh % heads
    return start_m, batch, head, head // group


@triton.jit
def _key_tile_ranges(
    # Sizes
    first_pos, last_pos, window_left, window_right, sinks, end_sinks, kv_len,
    # Meta-parameters
    BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, HAS_END_SINKS: tl.constexpr,
):  # fmt: skip
    """Key-tile loop bounds for a block of query positions ``[first_pos, last_pos]``.

    Returns a ``KeyTiles`` (``tile_ranges.py``): the sink tiles start in ``[0, sink_end)``, the
    band tiles in ``[band_start, band_end)`` and the end-sink tiles in ``[end_start, end_stop)``;
    the tiles starting in ``[inner_start, inner_end)`` are seen whole by every query of the block. Each segment
    starts past the tiles of the one before it (``sink_end <= band_start``, tile-aligned;
    ``end_start`` past the band's last tile; end sinks that reach back before the band
    stretch its start), so no key is visited twice. Every quantity
    is clamped to be >= 0 before it is divided. ``window_right`` is 0 when causal.
    Mirrored by ``key_tile_ranges``.
    """
    low = tl.maximum(first_pos - window_left, 0)  # first key of the band of the first query
    inner_low = tl.maximum(last_pos - window_left, 0)  # first key in the band of every query
    high = last_pos + window_right + 1
    if not CAUSAL:
        high = tl.maximum(high, sinks)  # sinks after the band: the band stretches over them
    high = tl.minimum(tl.maximum(high, 0), kv_len)
    inner_high = tl.minimum(tl.maximum(first_pos + window_right + 1, 0), kv_len)
    end_low = tl.maximum(kv_len - end_sinks, 0)
    band_start = (low // BLOCK_N) * BLOCK_N
    if HAS_END_SINKS:  # end sinks reaching back before the band: the band stretches back over them
        band_start = (tl.minimum(low, end_low) // BLOCK_N) * BLOCK_N
    inner_start = tl.minimum(((inner_low + BLOCK_N - 1) // BLOCK_N) * BLOCK_N, high)
    inner_end = tl.maximum((inner_high // BLOCK_N) * BLOCK_N, inner_start)
    sink_end = tl.minimum(tl.minimum(sinks, band_start), high)  # causal: sinks past last_pos are unseen
    band_tiles_end = tl.maximum(((high + BLOCK_N - 1) // BLOCK_N) * BLOCK_N, band_start)
    end_start = tl.maximum((end_low // BLOCK_N) * BLOCK_N, band_tiles_end)
    end_stop = kv_len  # visited only with HAS_END_SINKS
    if CAUSAL:
        end_stop = tl.minimum(end_stop, tl.maximum(last_pos + 1, 0))  # end sinks past last_pos are unseen
    return KeyTiles(sink_end, band_start, inner_start, inner_end, high, end_start, end_stop)


@triton.jit
def _key_segment(tiles, SEGMENT: tl.constexpr):
    """First and stop tile start of key segment ``SEGMENT`` of ``KEY_SEGMENTS``: 0 the sinks before
    the band, 1 the band's leading edge, 2 its interior (seen whole: no mask), 3 its trailing edge
    (the diagonal when causal), 4 the end sinks after it."""
    if SEGMENT == 0:
        start, stop = 0, tiles.sink_end
    elif SEGMENT == 1:
        start, stop = tiles.band_start, tiles.inner_start
    elif SEGMENT == 2:
        start, stop = tiles.inner_start, tiles.inner_end
    elif SEGMENT == 3:
        start, stop = tiles.inner_end, tiles.band_end
    else:
        start, stop = tiles.end_start, tiles.end_stop
    return start, stop


@triton.jit
def _query_tile_ranges(
    # Sizes
    start_n, last_key, offset, window_left, window_right, sinks, end_sinks, q_len, kv_len,
    # Meta-parameters
    BLOCK_M: tl.constexpr, CAUSAL: tl.constexpr, HAS_END_SINKS: tl.constexpr,
):  # fmt: skip
    """Query-tile loop bounds for the keys ``[start_n, last_key]`` (``offset = Sk - Sq``).

    Returns ``(query_start, inner_start, inner_end, query_end)``: the query tiles start in
    ``[query_start, query_end)``, and those in ``[inner_start, inner_end)`` see every key
    of the block. A block holding sinks or end sinks is seen by every later query (every
    query when not causal). Query ``i`` sees key ``j`` of the band when
    ``j - right <= pos(i) <= j + left``. Mirrored by ``query_tile_ranges``.
    """
    low = start_n - window_right - offset  # the first query whose band reaches the block
    inner_low = last_key - window_right - offset
    high = last_key + window_left + 1 - offset
    inner_high = start_n + window_left + 1 - offset
    holds_sinks = start_n < sinks
    if HAS_END_SINKS:
        holds_sinks = holds_sinks | (last_key >= kv_len - end_sinks)
    high = tl.where(holds_sinks, q_len, high)
    if not CAUSAL:
        low = tl.where(holds_sinks, 0, low)
    low = tl.minimum(tl.maximum(low, 0), q_len)
    high = tl.minimum(tl.maximum(high, 0), q_len)
    inner_low = tl.minimum(tl.maximum(inner_low, 0), q_len)
    inner_high = tl.minimum(tl.maximum(inner_high, 0), q_len)
    query_start = (low // BLOCK_M) * BLOCK_M
    inner_start = tl.minimum(((inner_low + BLOCK_M - 1) // BLOCK_M) * BLOCK_M, high)
    inner_end = tl.maximum((inner_high // BLOCK_M) * BLOCK_M, inner_start)
    return query_start, inner_start, inner_end, high


@triton.jit
def _query_segment(query_start, inner_start, inner_end, query_end, SEGMENT: tl.constexpr):
    """First and stop tile start of query segment ``SEGMENT``: 0 the leading edge, 1 the interior
    (seeing every key of the block: no mask), 2 the trailing edge."""
    if SEGMENT == 0:
        start, stop = query_start, inner_start
    elif SEGMENT == 1:
        start, stop = inner_start, inner_end
    else:
        start, stop = inner_end, query_end
    return start, stop


@triton.jit
def _scores(a, b, qk_scale, tanh_scale, SOFTCAP: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """Base-2 logits of ``a @ b`` and, with softcap, the tanh they went through (for the backward).

    Without softcap ``qk_scale = scale * log2(e)``; with it ``tanh_scale = scale / softcap`` and
    ``qk_scale = softcap * log2(e)``.
    """
    raw = tl.dot(a, b, input_precision=DOT_PRECISION)
    if SOFTCAP:
        capped = _tanh(raw * tanh_scale)
        return capped * qk_scale, capped
    return raw * qk_scale, raw


# ----------------------------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------------------------


@triton.jit
def _fwd_tile(
    # Sizes
    acc, row_max, row_sum, q,
    # Pointers
    k_base, v_base,
    # Sizes
    start_n, pos, window_left, window_right, sinks, end_sinks, kv_len, qk_scale, tanh_scale,
    # Strides
    stride_kn, stride_vn,
    # Sizes
    offs_n, offs_d,
    # Meta-parameters
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, HAS_END_SINKS: tl.constexpr, SOFTCAP: tl.constexpr,
    MASK: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """One key tile of the online softmax. ``MASK=False`` only for tiles every query sees whole."""
    keys = start_n + offs_n
    load_mask = (keys[:, None] < kv_len) & (offs_d[None, :] < HEAD_DIM)
    k = tl.load(k_base + keys[:, None] * stride_kn + offs_d[None, :], mask=load_mask, other=0.0)
    v = tl.load(v_base + keys[:, None] * stride_vn + offs_d[None, :], mask=load_mask, other=0.0)
    scores, _ = _scores(q, tl.trans(k), qk_scale, tanh_scale, SOFTCAP, DOT_PRECISION)
    if MASK:
        visible = _visible(
            pos[:, None], keys[None, :], window_left, window_right, sinks, end_sinks, kv_len, CAUSAL, HAS_END_SINKS
        )
        scores = tl.where(visible, scores, float("-inf"))
    new_max = tl.maximum(row_max, tl.max(scores, axis=1))
    # A row that has seen nothing yet keeps max -inf: subtract 0 instead, so exp2 gives 0, not NaN.
    safe_max = tl.where(new_max == float("-inf"), 0.0, new_max)
    probs = tl.exp2(scores - safe_max[:, None])
    rescale = tl.exp2(row_max - safe_max)
    row_sum = row_sum * rescale + tl.sum(probs, axis=1)
    acc = acc * rescale[:, None] + tl.dot(probs.to(v.dtype), v, input_precision=DOT_PRECISION)
    return acc, new_max, row_sum


@triton.autotune(configs=FWD_CONFIGS, key=AUTOTUNE_KEY, prune_configs_by=FWD_PRUNE)
@triton.jit
def _fwd_kernel(
    # Sizes
    # Pointers,
    # Pointers
    q_ptr, k_ptr, v_ptr, out_ptr, lse2_ptr, cu_seqlens_q_ptr, cu_seqlens_k_ptr,
    # Sizes
    # Strides,
    # Strides
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh, stride_om, stride_lb, stride_lh,
    # Sizes
    # Sizes,
    heads, group, q_len, kv_len, window_left, window_right, sinks, end_sinks, qk_scale, tanh_scale, seq_bucket,
    # Meta-parameters,
    # Meta-parameters
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, CAUSAL: tl.constexpr, HAS_END_SINKS: tl.constexpr,
    SOFTCAP: tl.constexpr,
    IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    start_m, batch, head, kv_head = _query_program(heads, group, q_len, BLOCK_M)
    q_start, q_len, k_start, kv_len = _sequence(cu_seqlens_q_ptr, cu_seqlens_k_ptr, batch, q_len, kv_len, IS_VARLEN)
    if start_m >= q_len:  # past the end of a shorter packed sequence
        return
    rows = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offset = kv_len - q_len
    pos = rows + offset
    row_mask = (rows[:, None] < q_len) & (offs_d[None, :] < HEAD_DIM)
    q = tl.load(
        q_ptr + batch * stride_qb + head * stride_qh + (q_start + rows[:, None]) * stride_qm + offs_d[None, :],
        mask=row_mask,
        other=0.0,
    )
    k_base = k_ptr + batch * stride_kb + kv_head * stride_kh + k_start * stride_kn
    v_base = v_ptr + batch * stride_vb + kv_head * stride_vh + k_start * stride_vn

    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    row_max = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    row_sum = tl.zeros((BLOCK_M,), dtype=tl.float32)
    first_pos = start_m + offset
    last_pos = tl.minimum(start_m + BLOCK_M, q_len) - 1 + offset
    tiles = _key_tile_ranges(
        first_pos, last_pos, window_left, window_right, sinks, end_sinks, kv_len, BLOCK_N, CAUSAL, HAS_END_SINKS
    )
    for segment in tl.static_range(KEY_SEGMENTS):
        if segment < KEY_SEGMENTS - 1 or HAS_END_SINKS:
            start, stop = _key_segment(tiles, segment)
            for start_n in range(start, stop, BLOCK_N):
                acc, row_max, row_sum = _fwd_tile(
                    acc, row_max, row_sum, q, k_base, v_base, start_n, pos, window_left, window_right, sinks,
                    end_sinks, kv_len, qk_scale, tanh_scale, stride_kn, stride_vn, offs_n, offs_d, HEAD_DIM, CAUSAL,
                    HAS_END_SINKS, SOFTCAP, segment != 2, DOT_PRECISION,
                )  # fmt: skip

    # A row saw a key iff row_sum >= 1 (its maximum contributes exp2(0)); others output 0.
    seen_any = row_sum > 0
    out = acc / tl.where(seen_any, row_sum, 1.0)[:, None]
    tl.store(
        out_ptr + batch * stride_ob + head * stride_oh + (q_start + rows[:, None]) * stride_om + offs_d[None, :],
        out.to(out_ptr.dtype.element_ty),
        mask=row_mask,
    )
    # Base-2 log-sum-exp of the scaled scores, kept for the backward; -inf for rows that saw nothing.
    lse2 = tl.where(seen_any, row_max + tl.log2(tl.where(seen_any, row_sum, 1.0)), float("-inf"))
    tl.store(lse2_ptr + batch * stride_lb + head * stride_lh + q_start + rows, lse2, mask=rows < q_len)


# ----------------------------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------------------------


@triton.jit
def _bwd_preprocess_kernel(
    # Pointers
    out_ptr, do_ptr, grad_lse_ptr, delta_ptr,
    # Strides
    stride_ob, stride_oh, stride_om, stride_dob, stride_doh, stride_dom, stride_lb, stride_lh,
    # Sizes
    heads, q_len,
    # Meta-parameters
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, HAS_GRAD_LSE: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip
    """delta = rowsum(dO * O) - dlse, the per-row term of dS = P * (dP - delta).

    A gradient g on the natural log-sum-exp adds g * P to dS, i.e. it only shifts delta.
    Row-wise, so packed sequences run as one batch element of ``total_q`` rows.
    """
    q_blocks = (q_len + BLOCK_M - 1) // BLOCK_M
    pid = tl.program_id(0)
    bh = (pid // q_blocks).to(tl.int64)
    rows = (pid % q_blocks) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    batch, head = bh // heads, bh % heads
    row_mask = (rows[:, None] < q_len) & (offs_d[None, :] < HEAD_DIM)
    out = tl.load(
        out_ptr + batch * stride_ob + head * stride_oh + rows[:, None] * stride_om + offs_d[None, :],
        mask=row_mask,
        other=0.0,
    )
    do = tl.load(
        do_ptr + batch * stride_dob + head * stride_doh + rows[:, None] * stride_dom + offs_d[None, :],
        mask=row_mask,
        other=0.0,
    )
    delta = tl.sum(out.to(tl.float32) * do.to(tl.float32), axis=1)
    row_offsets = batch * stride_lb + head * stride_lh + rows
    if HAS_GRAD_LSE:
        delta -= tl.load(grad_lse_ptr + row_offsets, mask=rows < q_len, other=0.0)
    tl.store(delta_ptr + row_offsets, delta, mask=rows < q_len)


@triton.jit
def _dkdv_tile(
    # Sizes
    dk, dv, k, v,
    # Pointers
    q_base, do_base, lse2_base, delta_base,
    # Sizes
    start_m, keys, offset, window_left, window_right, sinks, end_sinks, q_len, kv_len, qk_scale, tanh_scale,
    # Strides
    stride_qm, stride_dom,
    # Sizes
    offs_m, offs_d,
    # Meta-parameters
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, HAS_END_SINKS: tl.constexpr, SOFTCAP: tl.constexpr,
    MASK: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """One query tile's contribution to a key block's dk, dv, in the transposed (key-major) layout.

    Working with S^T = K Q^T directly keeps every product in the layout of its accumulator.
    """
    rows = start_m + offs_m
    q_t = tl.load(
        q_base + offs_d[:, None] + rows[None, :] * stride_qm,
        mask=(rows[None, :] < q_len) & (offs_d[:, None] < HEAD_DIM),
        other=0.0,
    )
    do = tl.load(
        do_base + rows[:, None] * stride_dom + offs_d[None, :],
        mask=(rows[:, None] < q_len) & (offs_d[None, :] < HEAD_DIM),
        other=0.0,
    )
    lse2 = tl.load(lse2_base + rows, mask=rows < q_len, other=0.0)
    delta = tl.load(delta_base + rows, mask=rows < q_len, other=0.0)
    scores_t, capped_t = _scores(k, q_t, qk_scale, tanh_scale, SOFTCAP, DOT_PRECISION)  # (BLOCK_N, BLOCK_M)
    probs_t = tl.exp2(scores_t - lse2[None, :])
    if MASK:
        # Masked after exp2: a row that sees nothing has lse2 = -inf, so exp2 is inf there; where() drops it.
        visible = _visible(
            rows[None, :] + offset, keys[:, None], window_left, window_right, sinks, end_sinks, kv_len, CAUSAL,
            HAS_END_SINKS,
        )  # fmt: skip
        probs_t = tl.where(visible & (rows[None, :] < q_len), probs_t, 0.0)
    dv += tl.dot(probs_t.to(do.dtype), do, input_precision=DOT_PRECISION)
    dprobs_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)
    dscores_t = probs_t * (dprobs_t - delta[None, :])
    if SOFTCAP:
        dscores_t = dscores_t * (1.0 - capped_t * capped_t)  # d tanh(x) = 1 - tanh(x)^2
    dk += tl.dot(dscores_t.to(q_t.dtype), tl.trans(q_t), input_precision=DOT_PRECISION)
    return dk, dv


@triton.autotune(configs=DKDV_CONFIGS, key=AUTOTUNE_KEY, prune_configs_by=DKDV_PRUNE)
@triton.jit
def _bwd_dkdv_kernel(
    # Sizes
    # Pointers,
    # Pointers
    q_ptr, k_ptr, v_ptr, do_ptr, lse2_ptr, delta_ptr, dk_ptr, dv_ptr, cu_seqlens_q_ptr, cu_seqlens_k_ptr,
    # Sizes
    # Strides,
    # Strides
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_dob, stride_doh, stride_dom, stride_lb, stride_lh, stride_dkb, stride_dkh, stride_dkn,
    # Sizes
    # Sizes,
    batch_kv_heads, heads, kv_heads, group, q_len, kv_len, window_left, window_right, sinks, end_sinks, qk_scale,
    tanh_scale, sm_scale, seq_bucket, # Meta-parameters,
    # Meta-parameters
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, CAUSAL: tl.constexpr, HAS_END_SINKS: tl.constexpr,
    SOFTCAP: tl.constexpr,
    IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    # The key block varies slowest, so the programs of block 0, the sink block that every query
    # sees and hence the longest, start first instead of trailing at the end of the grid.
    pid = tl.program_id(0)
    start_n = (pid // batch_kv_heads) * BLOCK_N
    bkv = (pid % batch_kv_heads).to(tl.int64)
    batch, kv_head = bkv // kv_heads, bkv % kv_heads
    q_start, q_len, k_start, kv_len = _sequence(cu_seqlens_q_ptr, cu_seqlens_k_ptr, batch, q_len, kv_len, IS_VARLEN)
    if start_n >= kv_len:  # past the end of a shorter packed sequence
        return
    keys = start_n + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    key_mask = (keys[:, None] < kv_len) & (offs_d[None, :] < HEAD_DIM)
    k = tl.load(
        k_ptr + batch * stride_kb + kv_head * stride_kh + (k_start + keys[:, None]) * stride_kn + offs_d[None, :],
        mask=key_mask,
        other=0.0,
    )
    v = tl.load(
        v_ptr + batch * stride_vb + kv_head * stride_vh + (k_start + keys[:, None]) * stride_vn + offs_d[None, :],
        mask=key_mask,
        other=0.0,
    )
    dk = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)

    offset = kv_len - q_len
    last_key = tl.minimum(start_n + BLOCK_N, kv_len) - 1
    query_start, inner_start, inner_end, query_end = _query_tile_ranges(
        start_n, last_key, offset, window_left, window_right, sinks, end_sinks, q_len, kv_len, BLOCK_M, CAUSAL,
        HAS_END_SINKS,
    )  # fmt: skip
    for member in range(0, group):  # the query heads sharing this key/value head: dk, dv summed in registers
        head = kv_head * group + member
        q_base = q_ptr + batch * stride_qb + head * stride_qh + q_start * stride_qm
        do_base = do_ptr + batch * stride_dob + head * stride_doh + q_start * stride_dom
        row_base = batch * stride_lb + head * stride_lh + q_start
        for segment in tl.static_range(3):
            start, stop = _query_segment(query_start, inner_start, inner_end, query_end, segment)
            for start_m in range(start, stop, BLOCK_M):
                dk, dv = _dkdv_tile(
                    dk, dv, k, v, q_base, do_base, lse2_ptr + row_base, delta_ptr + row_base, start_m, keys, offset,
                    window_left, window_right, sinks, end_sinks, q_len, kv_len, qk_scale, tanh_scale, stride_qm,
                    stride_dom, offs_m, offs_d, HEAD_DIM, CAUSAL, HAS_END_SINKS, SOFTCAP, segment != 1, DOT_PRECISION,
                )  # fmt: skip

    out_offsets = batch * stride_dkb + kv_head * stride_dkh + (k_start + keys[:, None]) * stride_dkn + offs_d[None, :]
    tl.store(dk_ptr + out_offsets, (dk * sm_scale).to(dk_ptr.dtype.element_ty), mask=key_mask)
    tl.store(dv_ptr + out_offsets, dv.to(dv_ptr.dtype.element_ty), mask=key_mask)


@triton.jit
def _dq_tile(
    # Sizes
    dq, q, do, lse2, delta,
    # Pointers
    k_base, v_base,
    # Sizes
    start_n, pos, window_left, window_right, sinks, end_sinks, kv_len, qk_scale, tanh_scale,
    # Strides
    stride_kn, stride_vn,
    # Sizes
    offs_n, offs_d,
    # Meta-parameters
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, HAS_END_SINKS: tl.constexpr, SOFTCAP: tl.constexpr,
    MASK: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    keys = start_n + offs_n
    load_mask = (keys[:, None] < kv_len) & (offs_d[None, :] < HEAD_DIM)
    k = tl.load(k_base + keys[:, None] * stride_kn + offs_d[None, :], mask=load_mask, other=0.0)
    v = tl.load(v_base + keys[:, None] * stride_vn + offs_d[None, :], mask=load_mask, other=0.0)
    scores, capped = _scores(q, tl.trans(k), qk_scale, tanh_scale, SOFTCAP, DOT_PRECISION)
    probs = tl.exp2(scores - lse2[:, None])
    if MASK:  # after exp2, as in _dkdv_tile
        visible = _visible(
            pos[:, None], keys[None, :], window_left, window_right, sinks, end_sinks, kv_len, CAUSAL, HAS_END_SINKS
        )
        probs = tl.where(visible, probs, 0.0)
    dprobs = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
    dscores = probs * (dprobs - delta[:, None])
    if SOFTCAP:
        dscores = dscores * (1.0 - capped * capped)
    return dq + tl.dot(dscores.to(k.dtype), k, input_precision=DOT_PRECISION)


@triton.autotune(configs=DQ_CONFIGS, key=AUTOTUNE_KEY, prune_configs_by=DQ_PRUNE)
@triton.jit
def _bwd_dq_kernel(
    # Sizes
    # Pointers,
    # Pointers
    q_ptr, k_ptr, v_ptr, do_ptr, lse2_ptr, delta_ptr, dq_ptr, cu_seqlens_q_ptr, cu_seqlens_k_ptr,
    # Sizes
    # Strides,
    # Strides
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_dob, stride_doh, stride_dom, stride_lb, stride_lh, stride_dqb, stride_dqh, stride_dqm,
    # Sizes
    # Sizes,
    heads, group, q_len, kv_len, window_left, window_right, sinks, end_sinks, qk_scale, tanh_scale, sm_scale,
    seq_bucket, # Meta-parameters,
    # Meta-parameters
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, CAUSAL: tl.constexpr, HAS_END_SINKS: tl.constexpr,
    SOFTCAP: tl.constexpr,
    IS_VARLEN: tl.constexpr, DOT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    start_m, batch, head, kv_head = _query_program(heads, group, q_len, BLOCK_M)
    q_start, q_len, k_start, kv_len = _sequence(cu_seqlens_q_ptr, cu_seqlens_k_ptr, batch, q_len, kv_len, IS_VARLEN)
    if start_m >= q_len:  # past the end of a shorter packed sequence
        return
    rows = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offset = kv_len - q_len
    pos = rows + offset
    row_mask = (rows[:, None] < q_len) & (offs_d[None, :] < HEAD_DIM)
    q = tl.load(
        q_ptr + batch * stride_qb + head * stride_qh + (q_start + rows[:, None]) * stride_qm + offs_d[None, :],
        mask=row_mask,
        other=0.0,
    )
    do = tl.load(
        do_ptr + batch * stride_dob + head * stride_doh + (q_start + rows[:, None]) * stride_dom + offs_d[None, :],
        mask=row_mask,
        other=0.0,
    )
    row_offsets = batch * stride_lb + head * stride_lh + q_start + rows
    lse2 = tl.load(lse2_ptr + row_offsets, mask=rows < q_len, other=0.0)
    delta = tl.load(delta_ptr + row_offsets, mask=rows < q_len, other=0.0)
    k_base = k_ptr + batch * stride_kb + kv_head * stride_kh + k_start * stride_kn
    v_base = v_ptr + batch * stride_vb + kv_head * stride_vh + k_start * stride_vn
    dq = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)

    first_pos = start_m + offset
    last_pos = tl.minimum(start_m + BLOCK_M, q_len) - 1 + offset
    tiles = _key_tile_ranges(
        first_pos, last_pos, window_left, window_right, sinks, end_sinks, kv_len, BLOCK_N, CAUSAL, HAS_END_SINKS
    )
    for segment in tl.static_range(KEY_SEGMENTS):
        if segment < KEY_SEGMENTS - 1 or HAS_END_SINKS:
            start, stop = _key_segment(tiles, segment)
            for start_n in range(start, stop, BLOCK_N):
                dq = _dq_tile(
                    dq, q, do, lse2, delta, k_base, v_base, start_n, pos, window_left, window_right, sinks, end_sinks,
                    kv_len, qk_scale, tanh_scale, stride_kn, stride_vn, offs_n, offs_d, HEAD_DIM, CAUSAL,
                    HAS_END_SINKS, SOFTCAP, segment != 2, DOT_PRECISION,
                )  # fmt: skip
    tl.store(
        dq_ptr + batch * stride_dqb + head * stride_dqh + (q_start + rows[:, None]) * stride_dqm + offs_d[None, :],
        (dq * sm_scale).to(dq_ptr.dtype.element_ty),
        mask=row_mask,
    )


# ----------------------------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------------------------


def _unit_last_stride(tensor: torch.Tensor) -> torch.Tensor:
    """The kernels take any batch/head/length strides but need the head dimension contiguous."""
    return tensor if tensor.stride(-1) == 1 or tensor.shape[-1] <= 1 else tensor.contiguous()


def _as_4d(tensor: torch.Tensor, packed: bool) -> torch.Tensor:
    """The kernels' (batch, heads, rows, dim) view: a packed (total, heads, dim) tensor is one batch of rows."""
    return tensor.unsqueeze(0).transpose(1, 2) if packed else tensor


def _strides(tensor: torch.Tensor, packed: bool) -> tuple[int, int, int]:
    """Batch, head and row strides of a 4-D view; packed sequences start at row offsets, not batches."""
    return 0 if packed else tensor.stride(0), tensor.stride(1), tensor.stride(2)


def _row_strides(lse: torch.Tensor, packed: bool) -> tuple[int, int]:
    """Batch and head strides of a log-sum-exp buffer: ``(B, H, Sq)``, or ``(H, total_q)`` when packed."""
    return (0, lse.stride(0)) if packed else (lse.stride(0), lse.stride(1))


class _Problem(NamedTuple):
    """What the kernels are launched with besides the tensors (lengths: the longest when packed)."""

    batch: int  # batch elements, or packed sequences
    q_len: int
    kv_len: int
    window_left: int
    window_right: int
    sinks: int
    end_sinks: int
    causal: bool
    scale: float
    softcap: float


def _kernel_args(q4, k4, problem: _Problem, packed: bool) -> dict:
    head_dim = q4.shape[3]
    softcap = problem.softcap
    return dict(
        group=q4.shape[1] // k4.shape[1],
        q_len=problem.q_len,
        kv_len=problem.kv_len,
        window_left=problem.window_left,
        window_right=problem.window_right,
        sinks=problem.sinks,
        end_sinks=problem.end_sinks,
        # Softcap folds the scale into the tanh's argument and log2(e) into its factor.
        qk_scale=(softcap if softcap else problem.scale) * LOG2E,
        tanh_scale=problem.scale / softcap if softcap else 1.0,
        seq_bucket=triton.next_power_of_2(max(problem.q_len, problem.kv_len, 16)),
        HEAD_DIM=head_dim,
        BLOCK_D=max(16, triton.next_power_of_2(head_dim)),
        CAUSAL=problem.causal,
        SOFTCAP=bool(softcap),
        IS_VARLEN=packed,
        DOT_PRECISION=dot_precision(q4.dtype),
        # Without end sinks their code is compiled out: those kernels are the ones built before end sinks.
        HAS_END_SINKS=problem.end_sinks > 0,
    )


def _attention_fwd(q, k, v, cu_seqlens_q, cu_seqlens_k, problem: _Problem):
    """The forward kernel: the output in q's dtype and the base-2 log-sum-exp, float32."""
    packed = cu_seqlens_q is not None
    q4, k4, v4 = (_as_4d(t, packed) for t in (q, k, v))
    heads = q4.shape[1]
    out = torch.empty(q.shape, device=q.device, dtype=q.dtype)
    lse2 = torch.empty((heads, q.shape[0]) if packed else q.shape[:3], device=q.device, dtype=torch.float32)
    if out.numel():

        def grid(meta):
            return (triton.cdiv(problem.q_len, meta["BLOCK_M"]) * problem.batch * heads,)

        _fwd_kernel[grid](
            q4, k4, v4, out, lse2, cu_seqlens_q, cu_seqlens_k, *_strides(q4, packed), *_strides(k4, packed),
            *_strides(v4, packed), *_strides(_as_4d(out, packed), packed), *_row_strides(lse2, packed), heads,
            **_kernel_args(q4, k4, problem, packed),
        )  # fmt: skip
    return out, lse2


def _bwd_preprocess(out4, do4, lse2, grad_lse, problem: _Problem, packed: bool, block_d: int):
    """``delta = rowsum(dO * O) - dlse`` per query row, float32 and shaped like ``lse2``."""
    heads, head_dim = out4.shape[1], out4.shape[3]
    delta = torch.empty_like(lse2)
    if out4.numel():
        grad_lse = None if grad_lse is None else grad_lse.float().contiguous()
        rows, batch = (out4.shape[2], 1) if packed else (problem.q_len, problem.batch)  # packed: one batch of rows
        _bwd_preprocess_kernel[(triton.cdiv(rows, PREPROCESS_BLOCK) * batch * heads,)](
            out4, do4, delta if grad_lse is None else grad_lse, delta, *_strides(out4, packed), *_strides(do4, packed),
            *_row_strides(lse2, packed), heads, rows, HEAD_DIM=head_dim, BLOCK_D=block_d,
            HAS_GRAD_LSE=grad_lse is not None, BLOCK_M=PREPROCESS_BLOCK,
        )  # fmt: skip
    return delta


def _attention_bwd(grad_out, grad_lse, q, k, v, out, lse2, cu_seqlens_q, cu_seqlens_k, problem: _Problem,
                   needs_dq: bool, needs_dkdv: bool):  # fmt: skip
    """The backward's three kernels: delta, then dk and dv per key block, then dq per query block
    (each only when its gradient is needed)."""
    packed = cu_seqlens_q is not None
    grad_out = torch.zeros_like(out) if grad_out is None else _unit_last_stride(grad_out)
    q4, k4, v4, out4, do4 = (_as_4d(t, packed) for t in (q, k, v, out, grad_out))
    heads, kv_heads = q4.shape[1], k4.shape[1]
    args = _kernel_args(q4, k4, problem, packed)
    delta = _bwd_preprocess(out4, do4, lse2, grad_lse, problem, packed, args["BLOCK_D"])
    inputs = (q4, k4, v4, do4, lse2, delta)
    strides = (*_strides(q4, packed), *_strides(k4, packed), *_strides(v4, packed), *_strides(do4, packed),
               *_row_strides(lse2, packed))  # fmt: skip
    dq = dk = dv = None
    if needs_dkdv:
        dk, dv = (
            torch.empty(k.shape, device=k.device, dtype=k.dtype),
            torch.empty(v.shape, device=v.device, dtype=v.dtype),
        )
        if dk.numel():

            def dkdv_grid(meta):
                return (triton.cdiv(problem.kv_len, meta["BLOCK_N"]) * problem.batch * kv_heads,)

            _bwd_dkdv_kernel[dkdv_grid](
                *inputs, dk, dv, cu_seqlens_q, cu_seqlens_k, *strides, *_strides(_as_4d(dk, packed), packed),
                problem.batch * kv_heads, heads, kv_heads, sm_scale=problem.scale, **args,
            )  # fmt: skip
    if needs_dq:
        dq = torch.empty(q.shape, device=q.device, dtype=q.dtype)
        if dq.numel():

            def dq_grid(meta):
                return (triton.cdiv(problem.q_len, meta["BLOCK_M"]) * problem.batch * heads,)

            _bwd_dq_kernel[dq_grid](
                *inputs, dq, cu_seqlens_q, cu_seqlens_k, *strides, *_strides(_as_4d(dq, packed), packed), heads,
                sm_scale=problem.scale, **args,
            )  # fmt: skip
    return dq, dk, dv


# ----------------------------------------------------------------------------------------------
# Autograd and the public functions
# ----------------------------------------------------------------------------------------------


class SlidingWindowAttentionFunction(torch.autograd.Function):
    """Dense ``(B, H, S, D)`` tensors, or packed ``(total, H, D)`` ones with their ``cu_seqlens``."""

    @staticmethod
    def forward(ctx, q, k, v, cu_seqlens_q, cu_seqlens_k, problem):
        q, k, v = (_unit_last_stride(t) for t in (q, k, v))
        out, lse2 = _attention_fwd(q, k, v, cu_seqlens_q, cu_seqlens_k, problem)
        ctx.save_for_backward(q, k, v, out, lse2, cu_seqlens_q, cu_seqlens_k)
        ctx.problem = problem
        ctx.set_materialize_grads(False)
        return out, lse2 * LN2

    @staticmethod
    def backward(ctx, grad_out, grad_lse):
        if grad_out is None and grad_lse is None:
            return None, None, None, None, None, None
        needs_dq, needs_dk, needs_dv = ctx.needs_input_grad[:3]
        dq, dk, dv = _attention_bwd(grad_out, grad_lse, *ctx.saved_tensors, ctx.problem, needs_dq,
                                    needs_dk or needs_dv)  # fmt: skip
        return dq, dk, dv, None, None, None


def sliding_window_attention(q, k, v, window, sinks=0, causal=True, scale=None, return_lse=False, softcap=0.0,
                             end_sinks=0):  # fmt: skip
    """Attention over a ``window`` band plus the first ``sinks`` and the last ``end_sinks`` keys; semantics in
    the module docstring.

    q ``(B, H, Sq, D)``, k and v ``(B, Hkv, Sk, D)``, all fp32, fp16 or bf16 on one device, D a
    multiple of 8 up to 256; ``window`` an int ``W`` or a ``(left, right)`` pair (-1: unbounded);
    ``scale`` defaults to ``1/sqrt(D)``; ``softcap > 0`` caps the scaled scores at
    ``softcap * tanh(s / softcap)``. Returns the output ``(B, H, Sq, D)`` in q's dtype and, with
    ``return_lse``, also the natural log-sum-exp of the (capped) scaled scores ``(B, H, Sq)`` in
    float32 (-inf where a query sees no key). Both are differentiable.
    """
    window, sinks, scale, softcap, end_sinks = check_attention_inputs(q, k, v, window, sinks, scale, softcap,
                                                                      end_sinks)  # fmt: skip
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    q_len, kv_len = q.shape[2], k.shape[2]
    settings = clamped_settings(q_len, kv_len, window, sinks, causal, end_sinks)
    problem = _Problem(q.shape[0], q_len, kv_len, *settings, bool(causal), scale, softcap)
    out, lse = SlidingWindowAttentionFunction.apply(q, k, v, None, None, problem)
    return (out, lse) if return_lse else out


def sliding_window_attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, window, sinks=0,
                                    causal=True, softcap=0.0, scale=None, return_lse=False, end_sinks=0):  # fmt: skip
    """``sliding_window_attention`` over packed sequences (FlashAttention's varlen layout).

    q ``(total_q, H, D)``, k and v ``(total_k, Hkv, D)``; sequence ``b`` holds rows
    ``cu_seqlens[b]:cu_seqlens[b + 1]`` (int32 offsets from 0 to the packed length, never
    decreasing; ``max_seqlen_*`` at least the longest sequence). Each sequence is attended on its
    own with the dense semantics (its own positions, bottom-right alignment, ``sinks`` and ``end_sinks``:
    the last ``end_sinks`` keys of each sequence, such as a padded batch's trailing [SEP]); no key of
    another sequence is read. Returns ``(total_q, H, D)`` and, with ``return_lse``, the
    log-sum-exp ``(H, total_q)`` in float32. Differentiable in q, k, v (and through the lse).
    """
    check_tensors(q, k, v, packed=True)
    window, sinks, scale, softcap, end_sinks = check_settings(window, sinks, scale, softcap, end_sinks)
    max_seqlen_q, max_seqlen_k = check_cu_seqlens(q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    settings = clamped_settings(max_seqlen_q, max_seqlen_k, window, sinks, causal, end_sinks)
    problem = _Problem(cu_seqlens_q.numel() - 1, max_seqlen_q, max_seqlen_k, *settings, bool(causal), scale, softcap)
    out, lse = SlidingWindowAttentionFunction.apply(q, k, v, cu_seqlens_q, cu_seqlens_k, problem)
    return (out, lse) if return_lse else out
