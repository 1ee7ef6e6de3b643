"""Sliding-window attention with sink tokens in Triton, forward and backward.

q ``(B, H, Sq, D)``, k and v ``(B, Hkv, Sk, D)`` with ``H % Hkv == 0`` (query head
``h`` reads key/value head ``h // (H // Hkv)``). Query ``i`` sits at key position
``pos(i) = i + Sk - Sq`` (bottom-right alignment). Key ``j`` is visible to query
``i`` when ``|pos(i) - j| <= window`` or ``j < sinks``, and, when causal, only if
``j <= pos(i)``: ``window=W, causal=True`` shows ``W + 1`` keys, like
FlashAttention's ``window_size=(W, 0)``. A query that sees no key outputs 0 (its
log-sum-exp is -inf and its gradients are 0). fp32, fp16 and bf16; D a power of
two from 16 to 256. Inputs may be strided (no copies are made).

The kernels skip every tile that no query of a block can see, so the work grows
with the window, not with the square of the sequence: a query block visits the
sink tiles before its band (``[0, sinks)``) and then the tiles of its band; a key
block, in the backward, visits the query blocks whose band reaches it, or every
query block when it holds sinks. Softmax is online (FlashAttention-2), in base 2
with the scale folded in, and the log-sum-exp saved by the forward lets the
backward recompute probabilities without storing them.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"


def _configs():
    if INTERPRETING:  # the interpreter cannot benchmark configurations; small tiles keep it quick
        return [triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}, num_warps=4, num_stages=1)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
            for m, n, w, s in [(128, 64, 8, 3), (128, 128, 8, 2), (64, 64, 4, 3), (128, 32, 4, 4), (64, 128, 4, 2)]]


@triton.jit
def _visible(pos, keys, window, sinks, kv_len, CAUSAL: tl.constexpr):
    """(BLOCK_M, BLOCK_N) mask of the keys each query position may attend to."""
    distance = pos[:, None] - keys[None, :]
    seen = (tl.abs(distance) <= window) | (keys[None, :] < sinks)
    if CAUSAL:
        seen = seen & (distance >= 0)
    return seen & (keys[None, :] < kv_len)


@triton.jit
def _key_tile_ranges(start_m, q_len, kv_len, window, sinks, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     CAUSAL: tl.constexpr):
    """The key tiles a query block visits: sinks ``[0, sink_end)``, then band ``[band_start, band_end)``.

    The band starts at a tile boundary; the sink tiles lie wholly before it, so no key
    is visited twice. Without causality sinks can also lie after a band near the
    start, and the band then extends to cover them. ``visited_key_tiles`` mirrors this.
    """
    first_pos = start_m + kv_len - q_len
    last_pos = tl.minimum(start_m + BLOCK_M, q_len) - 1 + kv_len - q_len
    band_start = (tl.maximum(first_pos - window, 0) // BLOCK_N) * BLOCK_N
    sink_end = tl.minimum(tl.minimum(sinks, band_start), kv_len)
    if CAUSAL:
        band_end = tl.minimum(last_pos + 1, kv_len)
        sink_end = tl.minimum(sink_end, last_pos + 1)
    else:
        band_end = tl.minimum(tl.maximum(last_pos + window + 1, sinks), kv_len)
    return sink_end, band_start, band_end


@triton.jit
def _fwd_tile(acc, row_max, row_sum, q, k_base, v_base, start_n, pos, window, sinks, kv_len, qk_scale,
              stride_kn, stride_vn, offs_n, offs_d, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr):
    keys = start_n + offs_n
    k = tl.load(k_base + keys[:, None] * stride_kn + offs_d[None, :], mask=keys[:, None] < kv_len, other=0.0)
    v = tl.load(v_base + keys[:, None] * stride_vn + offs_d[None, :], mask=keys[:, None] < kv_len, other=0.0)
    scores = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
    scores = tl.where(_visible(pos, keys, window, sinks, kv_len, CAUSAL), scores, float("-inf"))
    new_max = tl.maximum(row_max, tl.max(scores, axis=1))
    safe_max = tl.where(new_max == float("-inf"), 0.0, new_max)  # rows with nothing seen yet
    probs = tl.exp2(scores - safe_max[:, None])
    rescale = tl.exp2(row_max - safe_max)
    row_sum = row_sum * rescale + tl.sum(probs, axis=1)
    acc = acc * rescale[:, None] + tl.dot(probs.to(v.dtype), v, input_precision=DOT_PRECISION)
    return acc, new_max, row_sum


@triton.autotune(configs=_configs(), key=["HEAD_DIM", "CAUSAL", "window", "sinks", "q_len", "kv_len"])
@triton.jit
def _sliding_window_fwd_kernel(
    q_ptr, k_ptr, v_ptr, out_ptr, lse_ptr,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh, stride_om,
    heads, group, q_len, kv_len, window, sinks, qk_scale,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    start_m = tl.program_id(0) * BLOCK_M
    batch, head = tl.program_id(1) // heads, tl.program_id(1) % heads
    kv_head = head // group
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    pos = offs_m + (kv_len - q_len)
    q = tl.load(q_ptr + batch * stride_qb + head * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :],
                mask=offs_m[:, None] < q_len, other=0.0)
    k_base = k_ptr + batch * stride_kb + kv_head * stride_kh
    v_base = v_ptr + batch * stride_vb + kv_head * stride_vh

    acc = tl.zeros((BLOCK_M, HEAD_DIM), dtype=tl.float32)
    row_max = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    row_sum = tl.zeros((BLOCK_M,), dtype=tl.float32)
    sink_end, band_start, band_end = _key_tile_ranges(start_m, q_len, kv_len, window, sinks, BLOCK_M, BLOCK_N,
                                                      CAUSAL)
    for start_n in range(0, sink_end, BLOCK_N):
        acc, row_max, row_sum = _fwd_tile(acc, row_max, row_sum, q, k_base, v_base, start_n, pos, window, sinks,
                                          kv_len, qk_scale, stride_kn, stride_vn, offs_n, offs_d, CAUSAL,
                                          DOT_PRECISION)
    for start_n in range(band_start, band_end, BLOCK_N):
        acc, row_max, row_sum = _fwd_tile(acc, row_max, row_sum, q, k_base, v_base, start_n, pos, window, sinks,
                                          kv_len, qk_scale, stride_kn, stride_vn, offs_n, offs_d, CAUSAL,
                                          DOT_PRECISION)

    seen_any = row_sum > 0
    out = acc / tl.where(seen_any, row_sum, 1.0)[:, None]
    out_base = out_ptr + batch * stride_ob + head * stride_oh
    tl.store(out_base + offs_m[:, None] * stride_om + offs_d[None, :], out.to(out_ptr.dtype.element_ty),
             mask=offs_m[:, None] < q_len)
    # Base-2 log-sum-exp of the scaled scores; -inf for queries that see nothing.
    lse2 = tl.where(seen_any, row_max + tl.log2(tl.where(seen_any, row_sum, 1.0)), float("-inf"))
    tl.store(lse_ptr + tl.program_id(1) * q_len + offs_m, lse2, mask=offs_m < q_len)


@triton.jit
def _bwd_probabilities(q, k, pos, keys, lse2, window, sinks, kv_len, qk_scale,
                       CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr):
    scores = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
    # Masked first: for a query that sees nothing lse2 is -inf and exp2 would overflow.
    return tl.where(_visible(pos, keys, window, sinks, kv_len, CAUSAL), tl.exp2(scores - lse2[:, None]), 0.0)


@triton.autotune(configs=_configs(), key=["HEAD_DIM", "CAUSAL", "window", "sinks", "q_len", "kv_len"])
@triton.jit
def _sliding_window_bwd_dkdv_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_dob, stride_doh, stride_dom,
    heads, kv_heads, group, q_len, kv_len, window, sinks, qk_scale, sm_scale,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    start_n = tl.program_id(0) * BLOCK_N
    batch, kv_head = tl.program_id(1) // kv_heads, tl.program_id(1) % kv_heads
    offs_m = tl.arange(0, BLOCK_M)
    keys = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    k = tl.load(k_ptr + batch * stride_kb + kv_head * stride_kh + keys[:, None] * stride_kn + offs_d[None, :],
                mask=keys[:, None] < kv_len, other=0.0)
    v = tl.load(v_ptr + batch * stride_vb + kv_head * stride_vh + keys[:, None] * stride_vn + offs_d[None, :],
                mask=keys[:, None] < kv_len, other=0.0)
    dk = tl.zeros((BLOCK_N, HEAD_DIM), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, HEAD_DIM), dtype=tl.float32)

    # Queries that can see this key block: positions [start_n, last key + window] in the band
    # (from start_n - window when not causal), or every later query when the block holds sinks.
    offset = kv_len - q_len
    last_key = tl.minimum(start_n + BLOCK_N, kv_len) - 1
    if CAUSAL:
        first_query = tl.maximum(start_n - offset, 0)
    else:
        first_query = tl.maximum(start_n - window - offset, 0)
    end_query = tl.minimum(last_key + window - offset + 1, q_len)
    holds_sinks = start_n < sinks
    end_query = tl.where(holds_sinks, q_len, end_query)
    if not CAUSAL:
        first_query = tl.where(holds_sinks, 0, first_query)
    first_query = (first_query // BLOCK_M) * BLOCK_M

    for member in range(0, group):  # the query heads that share this key/value head
        head = kv_head * group + member
        q_base = q_ptr + batch * stride_qb + head * stride_qh
        do_base = do_ptr + batch * stride_dob + head * stride_doh
        row_base = (batch * heads + head) * q_len
        for start_m in range(first_query, end_query, BLOCK_M):
            rows = start_m + offs_m
            q = tl.load(q_base + rows[:, None] * stride_qm + offs_d[None, :], mask=rows[:, None] < q_len, other=0.0)
            do = tl.load(do_base + rows[:, None] * stride_dom + offs_d[None, :], mask=rows[:, None] < q_len,
                         other=0.0)
            lse2 = tl.load(lse_ptr + row_base + rows, mask=rows < q_len, other=0.0)
            delta = tl.load(delta_ptr + row_base + rows, mask=rows < q_len, other=0.0)
            probs = _bwd_probabilities(q, k, rows + offset, keys, lse2, window, sinks, kv_len, qk_scale, CAUSAL,
                                       DOT_PRECISION)
            probs = tl.where(rows[:, None] < q_len, probs, 0.0)
            dv += tl.dot(tl.trans(probs.to(do.dtype)), do, input_precision=DOT_PRECISION)
            dprobs = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
            dscores = probs * (dprobs - delta[:, None])
            dk += tl.dot(tl.trans(dscores.to(q.dtype)), q, input_precision=DOT_PRECISION)

    out_offsets = (batch * kv_heads + kv_head) * kv_len * HEAD_DIM + keys[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(dk_ptr + out_offsets, (dk * sm_scale).to(dk_ptr.dtype.element_ty), mask=keys[:, None] < kv_len)
    tl.store(dv_ptr + out_offsets, dv.to(dv_ptr.dtype.element_ty), mask=keys[:, None] < kv_len)


@triton.jit
def _dq_tile(dq, q, do, lse2, delta, k_base, v_base, start_n, pos, window, sinks, kv_len, qk_scale,
             stride_kn, stride_vn, offs_n, offs_d, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr):
    keys = start_n + offs_n
    k = tl.load(k_base + keys[:, None] * stride_kn + offs_d[None, :], mask=keys[:, None] < kv_len, other=0.0)
    v = tl.load(v_base + keys[:, None] * stride_vn + offs_d[None, :], mask=keys[:, None] < kv_len, other=0.0)
    probs = _bwd_probabilities(q, k, pos, keys, lse2, window, sinks, kv_len, qk_scale, CAUSAL, DOT_PRECISION)
    dprobs = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
    dscores = probs * (dprobs - delta[:, None])
    return dq + tl.dot(dscores.to(k.dtype), k, input_precision=DOT_PRECISION)


@triton.autotune(configs=_configs(), key=["HEAD_DIM", "CAUSAL", "window", "sinks", "q_len", "kv_len"])
@triton.jit
def _sliding_window_bwd_dq_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_dob, stride_doh, stride_dom,
    heads, group, q_len, kv_len, window, sinks, qk_scale, sm_scale,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    start_m = tl.program_id(0) * BLOCK_M
    batch, head = tl.program_id(1) // heads, tl.program_id(1) % heads
    kv_head = head // group
    rows = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    offset = kv_len - q_len
    pos = rows + offset
    q = tl.load(q_ptr + batch * stride_qb + head * stride_qh + rows[:, None] * stride_qm + offs_d[None, :],
                mask=rows[:, None] < q_len, other=0.0)
    do = tl.load(do_ptr + batch * stride_dob + head * stride_doh + rows[:, None] * stride_dom + offs_d[None, :],
                 mask=rows[:, None] < q_len, other=0.0)
    lse2 = tl.load(lse_ptr + tl.program_id(1) * q_len + rows, mask=rows < q_len, other=0.0)
    delta = tl.load(delta_ptr + tl.program_id(1) * q_len + rows, mask=rows < q_len, other=0.0)
    k_base = k_ptr + batch * stride_kb + kv_head * stride_kh
    v_base = v_ptr + batch * stride_vb + kv_head * stride_vh
    dq = tl.zeros((BLOCK_M, HEAD_DIM), dtype=tl.float32)

    sink_end, band_start, band_end = _key_tile_ranges(start_m, q_len, kv_len, window, sinks, BLOCK_M, BLOCK_N,
                                                      CAUSAL)
    for start_n in range(0, sink_end, BLOCK_N):
        dq = _dq_tile(dq, q, do, lse2, delta, k_base, v_base, start_n, pos, window, sinks, kv_len, qk_scale,
                      stride_kn, stride_vn, offs_n, offs_d, CAUSAL, DOT_PRECISION)
    for start_n in range(band_start, band_end, BLOCK_N):
        dq = _dq_tile(dq, q, do, lse2, delta, k_base, v_base, start_n, pos, window, sinks, kv_len, qk_scale,
                      stride_kn, stride_vn, offs_n, offs_d, CAUSAL, DOT_PRECISION)
    tl.store(dq_ptr + tl.program_id(1) * q_len * HEAD_DIM + rows[:, None] * HEAD_DIM + offs_d[None, :],
             (dq * sm_scale).to(dq_ptr.dtype.element_ty), mask=rows[:, None] < q_len)


def visited_key_tiles(q_len: int, kv_len: int, window: int, sinks: int, causal: bool,
                      block_m: int, block_n: int) -> list[list[int]]:
    """Start of every key tile each query block visits: a Python mirror of ``_key_tile_ranges``."""
    visited = []
    for start_m in range(0, q_len, block_m):
        first_pos = start_m + kv_len - q_len
        last_pos = min(start_m + block_m, q_len) - 1 + kv_len - q_len
        band_start = (max(first_pos - window, 0) // block_n) * block_n
        sink_end = min(sinks, band_start, kv_len)
        if causal:
            band_end = min(last_pos + 1, kv_len)
            sink_end = min(sink_end, last_pos + 1)
        else:
            band_end = min(max(last_pos + window + 1, sinks), kv_len)
        visited.append(list(range(0, sink_end, block_n)) + list(range(band_start, band_end, block_n)))
    return visited


def check_attention_inputs(q, k, v, window, sinks, scale) -> None:
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dim() != 4:
            raise ValueError(f"{name}: expected 4 dimensions (batch, heads, length, head_dim), got {tuple(tensor.shape)}")
        if tensor.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"{name}: expected float32, float16 or bfloat16, got {tensor.dtype}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"k, v: expected dtype {q.dtype} like q, got {k.dtype} and {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"k, v: expected device {q.device} like q, got {k.device} and {v.device}")
    if k.shape != v.shape:
        raise ValueError(f"v: expected the shape of k {tuple(k.shape)}, got {tuple(v.shape)}")
    if k.shape[0] != q.shape[0] or k.shape[3] != q.shape[3]:
        raise ValueError(f"k: batch and head_dim must match q's {q.shape[0]} and {q.shape[3]}, got {tuple(k.shape)}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"q: {q.shape[1]} heads is not a multiple of the {k.shape[1]} key/value heads")
    head_dim = q.shape[3]
    if head_dim < 16 or head_dim > 256 or head_dim & (head_dim - 1):
        raise ValueError(f"q: head_dim must be a power of two from 16 to 256, got {head_dim}")
    if not isinstance(window, int) or isinstance(window, bool) or window < 0:
        raise ValueError(f"window: expected an integer >= 0, got {window!r}")
    if not isinstance(sinks, int) or isinstance(sinks, bool) or sinks < 0:
        raise ValueError(f"sinks: expected an integer >= 0, got {sinks!r}")
    if scale is not None and not scale > 0:
        raise ValueError(f"scale: expected a positive number, got {scale!r}")


def _last_dim_contiguous(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.stride(-1) == 1 else tensor.contiguous()


def _head_strides(tensor: torch.Tensor) -> tuple[int, int, int]:
    return tensor.stride(0), tensor.stride(1), tensor.stride(2)


class _SlidingWindowAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, window, sinks, causal, scale):
        q, k, v = (_last_dim_contiguous(t) for t in (q, k, v))
        batch, heads, q_len, head_dim = q.shape
        kv_heads, kv_len = k.shape[1], k.shape[2]
        out = torch.empty(batch, heads, q_len, head_dim, device=q.device, dtype=q.dtype)
        lse2 = torch.empty(batch, heads, q_len, device=q.device, dtype=torch.float32)
        precision = "ieee" if q.dtype == torch.float32 else "tf32"
        if out.numel():
            grid = lambda meta: (triton.cdiv(q_len, meta["BLOCK_M"]), batch * heads)  # noqa: E731
            _sliding_window_fwd_kernel[grid](
                q, k, v, out, lse2, *_head_strides(q), *_head_strides(k), *_head_strides(v), *_head_strides(out),
                heads, heads // kv_heads, q_len, kv_len, window, sinks, scale * LOG2E,
                HEAD_DIM=head_dim, CAUSAL=causal, DOT_PRECISION=precision)
        ctx.save_for_backward(q, k, v, out, lse2)
        ctx.settings = (window, sinks, causal, scale, precision)
        lse = lse2 / LOG2E
        ctx.mark_non_differentiable(lse)
        ctx.set_materialize_grads(False)
        return out, lse

    @staticmethod
    def backward(ctx, grad_out, grad_lse):
        q, k, v, out, lse2 = ctx.saved_tensors
        window, sinks, causal, scale, precision = ctx.settings
        batch, heads, q_len, head_dim = q.shape
        kv_heads, kv_len = k.shape[1], k.shape[2]
        if grad_out is None:  # only the (non-differentiable) log-sum-exp was used
            return None, None, None, None, None, None, None
        grad_out = _last_dim_contiguous(grad_out)
        delta = (grad_out.float() * out.float()).sum(-1)  # rowsum(dO * O), (B, H, Sq)
        dq = torch.empty(batch, heads, q_len, head_dim, device=q.device, dtype=q.dtype)
        dk = torch.empty(batch, kv_heads, kv_len, head_dim, device=q.device, dtype=q.dtype)
        dv = torch.empty_like(dk)
        common = (*_head_strides(q), *_head_strides(k), *_head_strides(v), *_head_strides(grad_out))
        if dk.numel():
            grid = lambda meta: (triton.cdiv(kv_len, meta["BLOCK_N"]), batch * kv_heads)  # noqa: E731
            _sliding_window_bwd_dkdv_kernel[grid](
                q, k, v, grad_out, lse2, delta, dk, dv, *common, heads, kv_heads, heads // kv_heads, q_len, kv_len,
                window, sinks, scale * LOG2E, scale, HEAD_DIM=head_dim, CAUSAL=causal, DOT_PRECISION=precision)
        if dq.numel():
            grid = lambda meta: (triton.cdiv(q_len, meta["BLOCK_M"]), batch * heads)  # noqa: E731
            _sliding_window_bwd_dq_kernel[grid](
                q, k, v, grad_out, lse2, delta, dq, *common, heads, heads // kv_heads, q_len, kv_len,
                window, sinks, scale * LOG2E, scale, HEAD_DIM=head_dim, CAUSAL=causal, DOT_PRECISION=precision)
        return dq, dk, dv, None, None, None, None


def sliding_window_attention(q, k, v, window, sinks=0, causal=True, scale=None, return_lse=False):
    """Attention over a ±``window`` band plus the first ``sinks`` keys; see the module docstring.

    Returns the output ``(B, H, Sq, D)`` in q's dtype, and with ``return_lse`` also the
    natural log-sum-exp of the scaled scores ``(B, H, Sq)`` in float32 (not differentiable).
    """
    check_attention_inputs(q, k, v, window, sinks, scale)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    out, lse = _SlidingWindowAttention.apply(q, k, v, window, sinks, causal, scale)
    return (out, lse) if return_lse else out
