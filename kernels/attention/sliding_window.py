"""Sliding-window attention with sink tokens in Triton, forward and backward.

Semantics (shared with ``mask.py`` and ``reference.py``): q ``(B, H, Sq, D)``, k and
v ``(B, Hkv, Sk, D)`` with ``H % Hkv == 0`` (query head ``h`` reads key/value head
``h // (H // Hkv)``). Query ``i`` sits at key position ``pos(i) = i + Sk - Sq``
(bottom-right alignment). Key ``j`` is visible to query ``i`` when
``|pos(i) - j| <= window`` or ``j < sinks``, and, when causal, only if
``j <= pos(i)``: ``window=W, causal=True`` shows ``W + 1`` keys, like
FlashAttention's ``window_size=(W, 0)``. A query that sees no key outputs 0, its
log-sum-exp is -inf and its gradients are 0. fp32, fp16 and bf16 (fp32 matmuls run
in full IEEE precision, not TF32); D a power of two from 16 to 256. Inputs may be
strided along batch, heads and length; a tensor whose last dimension is not
contiguous is copied first. The log-sum-exp output (natural log, float32) is
differentiable too.

Work grows with the window, not with the square of the sequence: a query block
visits the sink tiles that lie before its band (keys ``[0, sinks)``), then the key
tiles of its band, and never a tile that no query of the block can see. Inside the
band, tiles that every query of the block sees whole skip the element mask. The
backward recomputes probabilities from the log-sum-exp saved by the forward
(FlashAttention-2): a preprocessing kernel forms ``delta = rowsum(dO * O)``; a
dk/dv kernel per key block visits the query blocks that see it (all of them for a
block that holds sinks), looping over the query heads of its GQA group so that
dk/dv are summed without atomics; a dq kernel per query block iterates like the
forward. Softmax runs in base 2 with the scale folded into the scores.

The key/query tile ranges are computed by ``_key_tile_ranges``/``_query_tile_ranges``
in the kernels and mirrored in Python by ``key_tile_ranges``/``query_tile_ranges``
(used by the tests and the benchmark's cost model).
"""

from __future__ import annotations

import math
import numbers
import operator

import torch
import triton
import triton.language as tl

from kernels.targets import INTERPRETING, check_kernel_device, max_shared_memory

LOG2E = 1.4426950408889634  # log2(e): exp(x) = exp2(x * LOG2E)
LN2 = 0.6931471805599453


def _config(block_m, block_n, warps, stages):
    return triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n}, num_warps=warps, num_stages=stages)


# GPU tilings (BLOCK_M, BLOCK_N, warps, stages) per (precision, head-dim bucket), chosen from
# `menagerie compile`'s report: each list holds configurations that are spill-free on sm_80 and
# sm_90 for the benchmark cases (the autotuner times them all on the GPU). The backward holds two
# accumulators (dk and dv, or dq beside q and dO): smaller key blocks, single-stage dk/dv at D 128.
# fp32 multiplies in IEEE precision, which unrolls each dot into FMAs: small tiles only.
# In the dk/dv kernel BLOCK_M is the query tile of the inner loop and BLOCK_N the key block.
FWD_TILES = {
    ("half", 64): [(128, 64, 4, 3), (128, 128, 8, 2), (64, 64, 4, 3), (128, 32, 4, 3), (64, 32, 4, 2)],
    ("half", 128): [(128, 64, 8, 2), (128, 32, 8, 2), (64, 128, 8, 2), (64, 64, 4, 2), (64, 32, 4, 2)],
    ("half", 256): [(64, 32, 4, 2), (64, 64, 8, 2), (128, 32, 8, 2)],
    ("fp32", 64): [(32, 32, 8, 1), (16, 32, 4, 1), (32, 16, 8, 1), (16, 16, 4, 1)],
    ("fp32", 128): [(32, 16, 8, 1), (16, 16, 4, 1)],
    ("fp32", 256): [(16, 16, 4, 1), (16, 16, 8, 1)],
}
DQ_TILES = {
    ("half", 64): [(128, 64, 8, 2), (64, 64, 4, 2), (64, 32, 4, 2)],
    ("half", 128): [(128, 64, 8, 2), (128, 32, 8, 2), (64, 64, 8, 2), (64, 32, 4, 2)],
    ("half", 256): [(64, 32, 4, 2), (32, 32, 4, 2), (64, 32, 8, 2)],
    ("fp32", 64): [(16, 32, 8, 1), (32, 16, 8, 1), (16, 16, 4, 1)],
    ("fp32", 128): [(32, 16, 8, 1), (16, 16, 4, 1)],
    ("fp32", 256): [(16, 16, 4, 1), (16, 16, 8, 1)],
}
DKDV_TILES = {
    ("half", 64): [(32, 64, 4, 2), (32, 64, 4, 1), (16, 64, 4, 2), (32, 32, 4, 2)],
    ("half", 128): [(32, 64, 8, 1), (32, 32, 4, 1), (16, 64, 4, 1), (16, 128, 8, 2), (16, 32, 4, 1)],
    ("half", 256): [(16, 32, 4, 1), (32, 32, 8, 1), (16, 64, 8, 1)],
    ("fp32", 64): [(16, 32, 8, 1), (16, 16, 8, 1)],
    ("fp32", 128): [(16, 32, 8, 1), (16, 16, 8, 1), (16, 16, 4, 1), (16, 16, 2, 1)],
    ("fp32", 256): [(16, 16, 8, 1), (16, 16, 4, 1), (16, 16, 2, 1)],
}


def _tuning(tiles: dict, shared_bytes) -> tuple[list, dict]:
    """Autotuner configurations and their pruning: only the tilings listed for the call's precision
    and head dim, and of those only the ones whose staged tiles fit the device's shared memory
    (``shared_bytes(block_m, block_n, stages, head_dim, itemsize)``, an upper estimate)."""
    configs = [_config(*tile) for tile in dict.fromkeys(tile for listed in tiles.values() for tile in listed)]

    def prune(configs, named_args, **kwargs):
        head_dim, itemsize = kwargs["HEAD_DIM"], named_args["q_ptr"].element_size()
        listed = set(tiles[("fp32" if itemsize == 4 else "half", max(64, head_dim))])
        chosen = [c for c in configs
                  if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) in listed]
        limit = max_shared_memory()
        fitting = [c for c in chosen
                   if shared_bytes(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_stages, head_dim, itemsize) <= limit]
        return fitting or chosen[-1:]

    return configs, {"early_config_prune": prune}


if INTERPRETING:
    # The interpreter cannot time configurations: one small tiling each, with BLOCK_M != BLOCK_N
    # so that a swapped block size cannot go unnoticed in the tests.
    FWD_CONFIGS, FWD_PRUNE = [_config(16, 32, 4, 1)], None
    DQ_CONFIGS, DQ_PRUNE = [_config(16, 32, 4, 1)], None
    DKDV_CONFIGS, DKDV_PRUNE = [_config(32, 16, 4, 1)], None
    PREPROCESS_BLOCK = 16
else:
    # Staged tiles: k and v per stage (forward, dq) or q and dO per stage (dk/dv), plus the tiles held.
    FWD_CONFIGS, FWD_PRUNE = _tuning(FWD_TILES, lambda m, n, stages, d, size: (2 * stages * n + m) * d * size)
    DQ_CONFIGS, DQ_PRUNE = _tuning(DQ_TILES, lambda m, n, stages, d, size: (2 * stages * n + 2 * m) * d * size)
    DKDV_CONFIGS, DKDV_PRUNE = _tuning(DKDV_TILES, lambda m, n, stages, d, size: (2 * stages * m + 2 * n) * d * size)
    PREPROCESS_BLOCK = 64
# Re-tune when the shape class changes; lengths only by power-of-two bucket. Dtypes are keyed automatically.
AUTOTUNE_KEY = ["HEAD_DIM", "CAUSAL", "window", "sinks", "group", "seq_bucket"]


# ----------------------------------------------------------------------------------------------
# Shared pieces: visibility and tile ranges
# ----------------------------------------------------------------------------------------------

@triton.jit
def _visible(pos, keys, window, sinks, kv_len, CAUSAL: tl.constexpr):
    """Mask of the visible (position, key) pairs; ``pos`` and ``keys`` broadcast (either may be the column)."""
    distance = pos - keys
    seen = (tl.abs(distance) <= window) | (keys < sinks)
    if CAUSAL:
        seen = seen & (distance >= 0)
    return seen & (keys < kv_len)


@triton.jit
def _query_program(heads, group, q_len, BLOCK_M: tl.constexpr):
    """One program per (query block, batch·head) on a 1-D grid (no 65535 limit on batch·heads);
    the batch·head index is 64-bit so base offsets may pass 2**31."""
    q_blocks = (q_len + BLOCK_M - 1) // BLOCK_M
    pid = tl.program_id(0)
    bh = (pid // q_blocks).to(tl.int64)
    start_m = (pid % q_blocks) * BLOCK_M
    batch, head = bh // heads, bh % heads
    return bh, start_m, batch, head, head // group


@triton.jit
def _key_tile_ranges(first_pos, last_pos, window, sinks, kv_len, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr):
    """Key-tile loop bounds for a block of query positions ``[first_pos, last_pos]``.

    Returns ``(sink_end, band_start, inner_start, inner_end, band_end)``: the sink tiles
    start in ``[0, sink_end)`` and the band tiles in ``[band_start, band_end)``; the tiles
    starting in ``[inner_start, inner_end)`` are seen whole by every query of the block.
    ``sink_end <= band_start`` (tile-aligned), so no key is visited twice. Every quantity
    is clamped to be >= 0 before it is divided. Mirrored by ``key_tile_ranges``.
    """
    low = tl.maximum(first_pos - window, 0)  # first key of the band of the first query
    inner_low = tl.maximum(last_pos - window, 0)  # first key in the band of every query
    if CAUSAL:
        high = tl.minimum(tl.maximum(last_pos + 1, 0), kv_len)
        inner_high = tl.minimum(tl.maximum(first_pos + 1, 0), kv_len)
    else:
        # Without causality sinks can also lie after the band: the band then stretches over them.
        high = tl.minimum(tl.maximum(last_pos + window + 1, sinks), kv_len)
        inner_high = tl.minimum(tl.maximum(first_pos + window + 1, 0), kv_len)
    band_start = (low // BLOCK_N) * BLOCK_N
    inner_start = tl.minimum(((inner_low + BLOCK_N - 1) // BLOCK_N) * BLOCK_N, high)
    inner_end = tl.maximum((inner_high // BLOCK_N) * BLOCK_N, inner_start)
    sink_end = tl.minimum(tl.minimum(sinks, band_start), high)  # causal: sinks past last_pos are unseen
    return sink_end, band_start, inner_start, inner_end, high


@triton.jit
def _query_tile_ranges(start_n, last_key, offset, window, sinks, q_len, BLOCK_M: tl.constexpr,
                       CAUSAL: tl.constexpr):
    """Query-tile loop bounds for the keys ``[start_n, last_key]`` (``offset = Sk - Sq``).

    Returns ``(query_start, inner_start, inner_end, query_end)``: the query tiles start in
    ``[query_start, query_end)``, and those in ``[inner_start, inner_end)`` see every key
    of the block. A block holding sinks is seen by every later query (every query when
    not causal). Mirrored by ``query_tile_ranges``.
    """
    if CAUSAL:
        low = start_n - offset  # the first query whose position reaches the block
        inner_low = last_key - offset
    else:
        low = start_n - window - offset
        inner_low = last_key - window - offset
    high = last_key + window + 1 - offset
    inner_high = start_n + window + 1 - offset
    holds_sinks = start_n < sinks
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


# ----------------------------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------------------------

@triton.jit
def _fwd_tile(acc, row_max, row_sum, q, k_base, v_base, start_n, pos, window, sinks, kv_len, qk_scale,
              stride_kn, stride_vn, offs_n, offs_d,
              CAUSAL: tl.constexpr, MASK: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """One key tile of the online softmax. ``MASK=False`` only for tiles every query sees whole."""
    keys = start_n + offs_n
    k = tl.load(k_base + keys[:, None] * stride_kn + offs_d[None, :], mask=keys[:, None] < kv_len, other=0.0)
    v = tl.load(v_base + keys[:, None] * stride_vn + offs_d[None, :], mask=keys[:, None] < kv_len, other=0.0)
    scores = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # base-2 logits
    if MASK:
        scores = tl.where(_visible(pos[:, None], keys[None, :], window, sinks, kv_len, CAUSAL), scores,
                          float("-inf"))
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
    q_ptr, k_ptr, v_ptr, out_ptr, lse2_ptr,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    heads, group, q_len, kv_len, window, sinks, qk_scale, seq_bucket,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    bh, start_m, batch, head, kv_head = _query_program(heads, group, q_len, BLOCK_M)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    offset = kv_len - q_len
    pos = offs_m + offset
    q = tl.load(q_ptr + batch * stride_qb + head * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :],
                mask=offs_m[:, None] < q_len, other=0.0)
    k_base = k_ptr + batch * stride_kb + kv_head * stride_kh
    v_base = v_ptr + batch * stride_vb + kv_head * stride_vh

    acc = tl.zeros((BLOCK_M, HEAD_DIM), dtype=tl.float32)
    row_max = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    row_sum = tl.zeros((BLOCK_M,), dtype=tl.float32)
    first_pos = start_m + offset
    last_pos = tl.minimum(start_m + BLOCK_M, q_len) - 1 + offset
    sink_end, band_start, inner_start, inner_end, band_end = _key_tile_ranges(
        first_pos, last_pos, window, sinks, kv_len, BLOCK_N, CAUSAL)
    for start_n in range(0, sink_end, BLOCK_N):  # sinks before the band
        acc, row_max, row_sum = _fwd_tile(acc, row_max, row_sum, q, k_base, v_base, start_n, pos, window, sinks,
                                          kv_len, qk_scale, stride_kn, stride_vn, offs_n, offs_d,
                                          CAUSAL, True, DOT_PRECISION)
    for start_n in range(band_start, inner_start, BLOCK_N):  # leading edge of the band
        acc, row_max, row_sum = _fwd_tile(acc, row_max, row_sum, q, k_base, v_base, start_n, pos, window, sinks,
                                          kv_len, qk_scale, stride_kn, stride_vn, offs_n, offs_d,
                                          CAUSAL, True, DOT_PRECISION)
    for start_n in range(inner_start, inner_end, BLOCK_N):  # interior: no mask needed
        acc, row_max, row_sum = _fwd_tile(acc, row_max, row_sum, q, k_base, v_base, start_n, pos, window, sinks,
                                          kv_len, qk_scale, stride_kn, stride_vn, offs_n, offs_d,
                                          CAUSAL, False, DOT_PRECISION)
    for start_n in range(inner_end, band_end, BLOCK_N):  # trailing edge (the diagonal when causal)
        acc, row_max, row_sum = _fwd_tile(acc, row_max, row_sum, q, k_base, v_base, start_n, pos, window, sinks,
                                          kv_len, qk_scale, stride_kn, stride_vn, offs_n, offs_d,
                                          CAUSAL, True, DOT_PRECISION)

    # A row saw a key iff row_sum >= 1 (its maximum contributes exp2(0)); others output 0.
    seen_any = row_sum > 0
    out = acc / tl.where(seen_any, row_sum, 1.0)[:, None]
    tl.store(out_ptr + bh * q_len * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=offs_m[:, None] < q_len)
    # Base-2 log-sum-exp of the scaled scores, kept for the backward; -inf for rows that saw nothing.
    lse2 = tl.where(seen_any, row_max + tl.log2(tl.where(seen_any, row_sum, 1.0)), float("-inf"))
    tl.store(lse2_ptr + bh * q_len + offs_m, lse2, mask=offs_m < q_len)


# ----------------------------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------------------------

@triton.jit
def _bwd_preprocess_kernel(out_ptr, do_ptr, grad_lse_ptr, delta_ptr, stride_dob, stride_doh, stride_dom,
                           heads, q_len, HEAD_DIM: tl.constexpr, HAS_GRAD_LSE: tl.constexpr,
                           BLOCK_M: tl.constexpr):
    """delta = rowsum(dO * O) - dlse, the per-row term of dS = P * (dP - delta).

    A gradient g on the natural log-sum-exp adds g * P to dS, i.e. it only shifts delta.
    """
    q_blocks = (q_len + BLOCK_M - 1) // BLOCK_M
    pid = tl.program_id(0)
    bh = (pid // q_blocks).to(tl.int64)
    rows = (pid % q_blocks) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    batch, head = bh // heads, bh % heads
    out = tl.load(out_ptr + bh * q_len * HEAD_DIM + rows[:, None] * HEAD_DIM + offs_d[None, :],
                  mask=rows[:, None] < q_len, other=0.0)
    do = tl.load(do_ptr + batch * stride_dob + head * stride_doh + rows[:, None] * stride_dom + offs_d[None, :],
                 mask=rows[:, None] < q_len, other=0.0)
    delta = tl.sum(out.to(tl.float32) * do.to(tl.float32), axis=1)
    if HAS_GRAD_LSE:
        delta -= tl.load(grad_lse_ptr + bh * q_len + rows, mask=rows < q_len, other=0.0)
    tl.store(delta_ptr + bh * q_len + rows, delta, mask=rows < q_len)


@triton.jit
def _dkdv_tile(dk, dv, k, v, q_base, do_base, lse2_base, delta_base, start_m, keys, offset, window, sinks,
               q_len, kv_len, qk_scale, stride_qm, stride_dom, offs_m, offs_d,
               CAUSAL: tl.constexpr, MASK: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """One query tile's contribution to a key block's dk, dv, in the transposed (key-major) layout.

    Working with S^T = K Q^T directly keeps every product in the layout of its accumulator.
    """
    rows = start_m + offs_m
    q_t = tl.load(q_base + offs_d[:, None] + rows[None, :] * stride_qm, mask=rows[None, :] < q_len, other=0.0)
    do = tl.load(do_base + rows[:, None] * stride_dom + offs_d[None, :], mask=rows[:, None] < q_len, other=0.0)
    lse2 = tl.load(lse2_base + rows, mask=rows < q_len, other=0.0)
    delta = tl.load(delta_base + rows, mask=rows < q_len, other=0.0)
    scores_t = tl.dot(k, q_t, input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M), base 2
    probs_t = tl.exp2(scores_t - lse2[None, :])
    if MASK:
        # Masked after exp2: a row that sees nothing has lse2 = -inf, so exp2 is inf there; where() drops it.
        visible = _visible(rows[None, :] + offset, keys[:, None], window, sinks, kv_len, CAUSAL)
        probs_t = tl.where(visible & (rows[None, :] < q_len), probs_t, 0.0)
    dv += tl.dot(probs_t.to(do.dtype), do, input_precision=DOT_PRECISION)
    dprobs_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)
    dscores_t = probs_t * (dprobs_t - delta[None, :])
    dk += tl.dot(dscores_t.to(q_t.dtype), tl.trans(q_t), input_precision=DOT_PRECISION)
    return dk, dv


@triton.autotune(configs=DKDV_CONFIGS, key=AUTOTUNE_KEY, prune_configs_by=DKDV_PRUNE)
@triton.jit
def _bwd_dkdv_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse2_ptr, delta_ptr, dk_ptr, dv_ptr,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_dob, stride_doh, stride_dom,
    batch_kv_heads, heads, kv_heads, group, q_len, kv_len, window, sinks, qk_scale, sm_scale, seq_bucket,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # The key block varies slowest, so the programs of block 0, the sink block that every query
    # sees and hence the longest, start first instead of trailing at the end of the grid.
    pid = tl.program_id(0)
    start_n = (pid // batch_kv_heads) * BLOCK_N
    bkv = (pid % batch_kv_heads).to(tl.int64)
    batch, kv_head = bkv // kv_heads, bkv % kv_heads
    keys = start_n + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    k = tl.load(k_ptr + batch * stride_kb + kv_head * stride_kh + keys[:, None] * stride_kn + offs_d[None, :],
                mask=keys[:, None] < kv_len, other=0.0)
    v = tl.load(v_ptr + batch * stride_vb + kv_head * stride_vh + keys[:, None] * stride_vn + offs_d[None, :],
                mask=keys[:, None] < kv_len, other=0.0)
    dk = tl.zeros((BLOCK_N, HEAD_DIM), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, HEAD_DIM), dtype=tl.float32)

    offset = kv_len - q_len
    last_key = tl.minimum(start_n + BLOCK_N, kv_len) - 1
    query_start, inner_start, inner_end, query_end = _query_tile_ranges(
        start_n, last_key, offset, window, sinks, q_len, BLOCK_M, CAUSAL)
    for member in range(0, group):  # the query heads sharing this key/value head: dk, dv summed in registers
        head = kv_head * group + member
        q_base = q_ptr + batch * stride_qb + head * stride_qh
        do_base = do_ptr + batch * stride_dob + head * stride_doh
        row_base = (batch * heads + head) * q_len
        for start_m in range(query_start, inner_start, BLOCK_M):
            dk, dv = _dkdv_tile(dk, dv, k, v, q_base, do_base, lse2_ptr + row_base, delta_ptr + row_base, start_m,
                                keys, offset, window, sinks, q_len, kv_len, qk_scale, stride_qm, stride_dom, offs_m,
                                offs_d, CAUSAL, True, DOT_PRECISION)
        for start_m in range(inner_start, inner_end, BLOCK_M):
            dk, dv = _dkdv_tile(dk, dv, k, v, q_base, do_base, lse2_ptr + row_base, delta_ptr + row_base, start_m,
                                keys, offset, window, sinks, q_len, kv_len, qk_scale, stride_qm, stride_dom, offs_m,
                                offs_d, CAUSAL, False, DOT_PRECISION)
        for start_m in range(inner_end, query_end, BLOCK_M):
            dk, dv = _dkdv_tile(dk, dv, k, v, q_base, do_base, lse2_ptr + row_base, delta_ptr + row_base, start_m,
                                keys, offset, window, sinks, q_len, kv_len, qk_scale, stride_qm, stride_dom, offs_m,
                                offs_d, CAUSAL, True, DOT_PRECISION)

    out_offsets = bkv * kv_len * HEAD_DIM + keys[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(dk_ptr + out_offsets, (dk * sm_scale).to(dk_ptr.dtype.element_ty), mask=keys[:, None] < kv_len)
    tl.store(dv_ptr + out_offsets, dv.to(dv_ptr.dtype.element_ty), mask=keys[:, None] < kv_len)


@triton.jit
def _dq_tile(dq, q, do, lse2, delta, k_base, v_base, start_n, pos, window, sinks, kv_len, qk_scale,
             stride_kn, stride_vn, offs_n, offs_d,
             CAUSAL: tl.constexpr, MASK: tl.constexpr, DOT_PRECISION: tl.constexpr):
    keys = start_n + offs_n
    k = tl.load(k_base + keys[:, None] * stride_kn + offs_d[None, :], mask=keys[:, None] < kv_len, other=0.0)
    v = tl.load(v_base + keys[:, None] * stride_vn + offs_d[None, :], mask=keys[:, None] < kv_len, other=0.0)
    scores = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
    probs = tl.exp2(scores - lse2[:, None])
    if MASK:  # after exp2, as in _dkdv_tile
        probs = tl.where(_visible(pos[:, None], keys[None, :], window, sinks, kv_len, CAUSAL), probs, 0.0)
    dprobs = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
    dscores = probs * (dprobs - delta[:, None])
    return dq + tl.dot(dscores.to(k.dtype), k, input_precision=DOT_PRECISION)


@triton.autotune(configs=DQ_CONFIGS, key=AUTOTUNE_KEY, prune_configs_by=DQ_PRUNE)
@triton.jit
def _bwd_dq_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse2_ptr, delta_ptr, dq_ptr,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_dob, stride_doh, stride_dom,
    heads, group, q_len, kv_len, window, sinks, qk_scale, sm_scale, seq_bucket,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    bh, start_m, batch, head, kv_head = _query_program(heads, group, q_len, BLOCK_M)
    rows = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    offset = kv_len - q_len
    pos = rows + offset
    q = tl.load(q_ptr + batch * stride_qb + head * stride_qh + rows[:, None] * stride_qm + offs_d[None, :],
                mask=rows[:, None] < q_len, other=0.0)
    do = tl.load(do_ptr + batch * stride_dob + head * stride_doh + rows[:, None] * stride_dom + offs_d[None, :],
                 mask=rows[:, None] < q_len, other=0.0)
    lse2 = tl.load(lse2_ptr + bh * q_len + rows, mask=rows < q_len, other=0.0)
    delta = tl.load(delta_ptr + bh * q_len + rows, mask=rows < q_len, other=0.0)
    k_base = k_ptr + batch * stride_kb + kv_head * stride_kh
    v_base = v_ptr + batch * stride_vb + kv_head * stride_vh
    dq = tl.zeros((BLOCK_M, HEAD_DIM), dtype=tl.float32)

    first_pos = start_m + offset
    last_pos = tl.minimum(start_m + BLOCK_M, q_len) - 1 + offset
    sink_end, band_start, inner_start, inner_end, band_end = _key_tile_ranges(
        first_pos, last_pos, window, sinks, kv_len, BLOCK_N, CAUSAL)
    for start_n in range(0, sink_end, BLOCK_N):
        dq = _dq_tile(dq, q, do, lse2, delta, k_base, v_base, start_n, pos, window, sinks, kv_len, qk_scale,
                      stride_kn, stride_vn, offs_n, offs_d, CAUSAL, True, DOT_PRECISION)
    for start_n in range(band_start, inner_start, BLOCK_N):
        dq = _dq_tile(dq, q, do, lse2, delta, k_base, v_base, start_n, pos, window, sinks, kv_len, qk_scale,
                      stride_kn, stride_vn, offs_n, offs_d, CAUSAL, True, DOT_PRECISION)
    for start_n in range(inner_start, inner_end, BLOCK_N):
        dq = _dq_tile(dq, q, do, lse2, delta, k_base, v_base, start_n, pos, window, sinks, kv_len, qk_scale,
                      stride_kn, stride_vn, offs_n, offs_d, CAUSAL, False, DOT_PRECISION)
    for start_n in range(inner_end, band_end, BLOCK_N):
        dq = _dq_tile(dq, q, do, lse2, delta, k_base, v_base, start_n, pos, window, sinks, kv_len, qk_scale,
                      stride_kn, stride_vn, offs_n, offs_d, CAUSAL, True, DOT_PRECISION)
    tl.store(dq_ptr + bh * q_len * HEAD_DIM + rows[:, None] * HEAD_DIM + offs_d[None, :],
             (dq * sm_scale).to(dq_ptr.dtype.element_ty), mask=rows[:, None] < q_len)


# ----------------------------------------------------------------------------------------------
# Python mirrors of the tile ranges (tests, cost model)
# ----------------------------------------------------------------------------------------------

def _clamped(q_len: int, kv_len: int, window: int, sinks: int) -> tuple[int, int]:
    """The launcher's clamping of window and sinks; it leaves the mask unchanged (|pos - j| < Sq + Sk)."""
    return min(window, q_len + kv_len), min(sinks, kv_len)


def key_tile_ranges(first_pos: int, last_pos: int, window: int, sinks: int, kv_len: int, block_n: int,
                    causal: bool) -> tuple[int, int, int, int, int]:
    """Python mirror of ``_key_tile_ranges``: ``(sink_end, band_start, inner_start, inner_end, band_end)``."""
    low, inner_low = max(first_pos - window, 0), max(last_pos - window, 0)
    if causal:
        high, inner_high = min(max(last_pos + 1, 0), kv_len), min(max(first_pos + 1, 0), kv_len)
    else:
        high, inner_high = min(max(last_pos + window + 1, sinks), kv_len), min(max(first_pos + window + 1, 0), kv_len)
    band_start = low // block_n * block_n
    inner_start = min(-(-inner_low // block_n) * block_n, high)
    inner_end = max(inner_high // block_n * block_n, inner_start)
    return min(sinks, band_start, high), band_start, inner_start, inner_end, high


def query_tile_ranges(start_n: int, last_key: int, q_len: int, kv_len: int, window: int, sinks: int,
                      block_m: int, causal: bool) -> tuple[int, int, int, int]:
    """Python mirror of ``_query_tile_ranges``: ``(query_start, inner_start, inner_end, query_end)``."""
    offset = kv_len - q_len
    low = start_n - offset if causal else start_n - window - offset
    inner_low = last_key - offset if causal else last_key - window - offset
    high, inner_high = last_key + window + 1 - offset, start_n + window + 1 - offset
    if start_n < sinks:
        high = q_len
        if not causal:
            low = 0
    low, high, inner_low, inner_high = (min(max(x, 0), q_len) for x in (low, high, inner_low, inner_high))
    inner_start = min(-(-inner_low // block_m) * block_m, high)
    return low // block_m * block_m, inner_start, max(inner_high // block_m * block_m, inner_start), high


def visited_key_tiles(q_len: int, kv_len: int, window: int, sinks: int, causal: bool,
                      block_m: int, block_n: int) -> list[list[int]]:
    """Start of every key tile that each query block visits, forward and dq (sink tiles, then band tiles)."""
    window, sinks = _clamped(q_len, kv_len, window, sinks)
    visited = []
    for start_m in range(0, q_len, block_m):
        first_pos = start_m + kv_len - q_len
        last_pos = min(start_m + block_m, q_len) - 1 + kv_len - q_len
        sink_end, band_start, _, _, band_end = key_tile_ranges(first_pos, last_pos, window, sinks, kv_len, block_n,
                                                                causal)
        visited.append(list(range(0, sink_end, block_n)) + list(range(band_start, band_end, block_n)))
    return visited


def visited_query_tiles(q_len: int, kv_len: int, window: int, sinks: int, causal: bool,
                        block_m: int, block_n: int) -> list[list[int]]:
    """Start of every query tile that each key block's dk/dv visits (per query head of its group)."""
    window, sinks = _clamped(q_len, kv_len, window, sinks)
    visited = []
    for start_n in range(0, kv_len, block_n):
        last_key = min(start_n + block_n, kv_len) - 1
        start, _, _, end = query_tile_ranges(start_n, last_key, q_len, kv_len, window, sinks, block_m, causal)
        visited.append(list(range(start, end, block_m)))
    return visited


# ----------------------------------------------------------------------------------------------
# Launcher, autograd and the public function
# ----------------------------------------------------------------------------------------------

def _as_index(value, name: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {value!r}") from None


def check_attention_inputs(q, k, v, window, sinks, scale) -> tuple[int, int, float | None]:
    """Validate the arguments (errors name the argument); return window, sinks and scale normalized."""
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dim() != 4:
            raise ValueError(f"{name}: expected 4 dimensions (batch, heads, length, head_dim), "
                             f"got shape {tuple(tensor.shape)}")
        if tensor.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"{name}: expected float32, float16 or bfloat16, got {tensor.dtype}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"k, v: expected dtype {q.dtype} like q, got {k.dtype} and {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"k, v: expected device {q.device} like q, got {k.device} and {v.device}")
    check_kernel_device("q", q)
    if k.shape != v.shape:
        raise ValueError(f"v: expected the shape of k {tuple(k.shape)}, got {tuple(v.shape)}")
    if k.shape[0] != q.shape[0] or k.shape[3] != q.shape[3]:
        raise ValueError(f"k: batch and head_dim must match q's {q.shape[0]} and {q.shape[3]}, "
                         f"got shape {tuple(k.shape)}")
    if k.shape[1] == 0 or q.shape[1] % k.shape[1]:
        raise ValueError(f"q: {q.shape[1]} heads is not a multiple of the {k.shape[1]} key/value heads of k")
    head_dim = q.shape[3]
    if head_dim < 16 or head_dim > 256 or head_dim & (head_dim - 1):
        raise ValueError(f"q: head_dim must be a power of two from 16 to 256, got {head_dim}")
    window, sinks = _as_index(window, "window"), _as_index(sinks, "sinks")
    if window < 0:
        raise ValueError(f"window: expected an integer >= 0, got {window}")
    if sinks < 0:
        raise ValueError(f"sinks: expected an integer >= 0, got {sinks}")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            raise TypeError(f"scale: expected a real number, got {scale!r}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale: expected a positive finite number, got {scale!r}")
        scale = float(scale)
    return window, sinks, scale


def _unit_last_stride(tensor: torch.Tensor) -> torch.Tensor:
    """The kernels take any batch/head/length strides but need the head dimension contiguous."""
    return tensor if tensor.stride(-1) == 1 or tensor.shape[-1] <= 1 else tensor.contiguous()


def _strides(tensor: torch.Tensor) -> tuple[int, int, int]:
    return tensor.stride(0), tensor.stride(1), tensor.stride(2)


def _shape_args(q, k, window, sinks, causal):
    batch, heads, q_len, head_dim = q.shape
    kv_heads, kv_len = k.shape[1], k.shape[2]
    return dict(group=heads // kv_heads, q_len=q_len, kv_len=kv_len, window=window, sinks=sinks,
                seq_bucket=triton.next_power_of_2(max(q_len, kv_len, 16)), HEAD_DIM=head_dim, CAUSAL=causal,
                DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32")  # fp32 stays fp32, not TF32


class _SlidingWindowAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, window, sinks, causal, scale):
        q, k, v = (_unit_last_stride(t) for t in (q, k, v))
        batch, heads, q_len, head_dim = q.shape
        out = torch.empty(q.shape, device=q.device, dtype=q.dtype)
        lse2 = torch.empty((batch, heads, q_len), device=q.device, dtype=torch.float32)
        shape = _shape_args(q, k, window, sinks, causal)
        if out.numel():
            grid = lambda meta: (triton.cdiv(q_len, meta["BLOCK_M"]) * batch * heads,)  # noqa: E731
            _fwd_kernel[grid](q, k, v, out, lse2, *_strides(q), *_strides(k), *_strides(v), heads,
                              qk_scale=scale * LOG2E, **shape)
        ctx.save_for_backward(q, k, v, out, lse2)
        ctx.settings = (scale, shape)
        ctx.set_materialize_grads(False)
        return out, lse2 * LN2

    @staticmethod
    def backward(ctx, grad_out, grad_lse):
        q, k, v, out, lse2 = ctx.saved_tensors
        scale, shape = ctx.settings
        batch, heads, q_len, head_dim = q.shape
        kv_heads, kv_len = k.shape[1], k.shape[2]
        if grad_out is None and grad_lse is None:
            return None, None, None, None, None, None, None
        grad_out = torch.zeros_like(out) if grad_out is None else _unit_last_stride(grad_out)
        delta = torch.empty_like(lse2)
        if out.numel():
            grad_lse = None if grad_lse is None else grad_lse.float().contiguous()
            grid = (triton.cdiv(q_len, PREPROCESS_BLOCK) * batch * heads,)
            _bwd_preprocess_kernel[grid](out, grad_out, grad_lse if grad_lse is not None else delta, delta,
                                         *_strides(grad_out), heads, q_len, HEAD_DIM=head_dim,
                                         HAS_GRAD_LSE=grad_lse is not None, BLOCK_M=PREPROCESS_BLOCK)
        strides = (*_strides(q), *_strides(k), *_strides(v), *_strides(grad_out))
        dq = dk = dv = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            dk = torch.empty(k.shape, device=k.device, dtype=k.dtype)
            dv = torch.empty(v.shape, device=v.device, dtype=v.dtype)
            if dk.numel():
                grid = lambda meta: (triton.cdiv(kv_len, meta["BLOCK_N"]) * batch * kv_heads,)  # noqa: E731
                _bwd_dkdv_kernel[grid](q, k, v, grad_out, lse2, delta, dk, dv, *strides, batch * kv_heads, heads,
                                       kv_heads, qk_scale=scale * LOG2E, sm_scale=scale, **shape)
        if ctx.needs_input_grad[0]:
            dq = torch.empty(q.shape, device=q.device, dtype=q.dtype)
            if dq.numel():
                grid = lambda meta: (triton.cdiv(q_len, meta["BLOCK_M"]) * batch * heads,)  # noqa: E731
                _bwd_dq_kernel[grid](q, k, v, grad_out, lse2, delta, dq, *strides, heads,
                                     qk_scale=scale * LOG2E, sm_scale=scale, **shape)
        return dq, dk, dv, None, None, None, None


def sliding_window_attention(q, k, v, window, sinks=0, causal=True, scale=None, return_lse=False):
    """Attention over a ``window`` band plus the first ``sinks`` keys; semantics in the module docstring.

    q ``(B, H, Sq, D)``, k and v ``(B, Hkv, Sk, D)``, all fp32, fp16 or bf16 on one device;
    ``scale`` defaults to ``1/sqrt(D)``. Returns the output ``(B, H, Sq, D)`` in q's dtype
    and, with ``return_lse``, also the natural log-sum-exp of the scaled scores
    ``(B, H, Sq)`` in float32 (-inf where a query sees no key). Both are differentiable.
    """
    window, sinks, scale = check_attention_inputs(q, k, v, window, sinks, scale)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    # Same mask, but int32-safe arithmetic in the kernels and fewer distinct autotuning keys.
    window, sinks = _clamped(q.shape[2], k.shape[2], window, sinks)
    out, lse = _SlidingWindowAttention.apply(q, k, v, window, sinks, bool(causal), scale)
    return (out, lse) if return_lse else out
