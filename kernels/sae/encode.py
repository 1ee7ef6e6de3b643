"""Fused TopK encoder: ``topk(relu((x - b_dec) @ W_enc + b_enc), k)`` without the ``(N, M)`` matrix.

x ``(N, d)``, W_enc ``(d, M)`` (any strides: a model that stores the encoder as
``(M, d)`` passes its transpose), b_enc ``(M,)``, b_dec ``(d,)``, all fp32, fp16 or
bf16. Returns ``values`` (the inputs' dtype) and ``indices`` (int64), both ``(N, k)``,
sorted by value, descending, ties broken by the lower index.

One program owns ``BLOCK_N`` rows and a contiguous range of latents. It walks that
range in tiles of ``BLOCK_M`` latents, computes the tile's pre-activations with
``tl.dot`` (float32 accumulation), and merges them into a running top-``BLOCK_M``
list kept in registers, so pre-activations never reach memory. A candidate is one
int64 key: the float32 bits of ``relu(pre)`` (non-negative, so its bits order like
its value) above ``2**31 - 1 - index`` (so equal values order by lower index). A
merge keeps the ``BLOCK_M`` largest keys of the list and the tile (``tl.topk`` on a
GPU, the bitonic network of ``bitonic.merge_top`` under the interpreter; see
``MERGE_WITH_TL_TOPK``); it is skipped when no key in the tile beats its row's
current ``BLOCK_M``-th best. With several latent ranges per
row block (to fill the GPU), the per-range lists are merged by ``torch.topk`` on the
keys, which are unique. ``allowed`` (bool ``(M,)``) restricts the selection to some
latents, as AuxK does with the dead ones.

Backward, with ``g`` the gradient of ``values`` masked where ReLU was inactive:
``dW_enc[:, m] = sum g * (x - b_dec)`` over the rows that selected ``m``, and
``db_enc[m] = sum g`` (deterministic per-latent sums, see ``latent_sums``);
``dx = sum_j g[:, j] * W_enc[:, indices[:, j]]`` (a row gather, as the decoder);
``db_dec = -dx.sum(0)``.
"""

import torch
import triton
import triton.language as tl

from menagerie.kernels.sae.bitonic import merge_top
from menagerie.kernels.sae.decode import gather_rows
from menagerie.kernels.sae.latent_sums import LatentPairs, latent_weighted_sums
from menagerie.kernels.sae.validate import check_float_tensor, check_same
from menagerie.kernels.targets import INTERPRETING, gpu_capability, multiprocessor_count, on_gpu
from menagerie.kernels.tiles import tiling
from menagerie.kernels.validate import dot_precision

MAX_K = 1024
INDEX_BASE = 2**31 - 1  # keys hold INDEX_BASE - index in their low 32 bits
BLOCK_D = 32
# How a tile joins the running list. On a GPU, tl.topk: it compiles in seconds, where the bitonic
# network (reshape/permute/split/join stages) took minutes in Triton's layout passes. Under the
# interpreter the network: tl.topk reduces element by element in Python there (~80x slower).
MERGE_WITH_TL_TOPK = not INTERPRETING
# A program holds BLOCK_N x BLOCK_M <= merge_keys() int64 keys (and twice that while merging):
# 4096 on Hopper and later, where the 64-row tiles that warpgroup MMAs (HGMMA) need stay
# spill-free, 2048 before (4096 spill on sm_80). Warps and pipeline stages are tuned on the GPU
# among configurations of which `menagerie compile` finds one spill-free on sm_80 and sm_90 for
# every dtype at k <= 64.
if INTERPRETING:
    ENCODE_CONFIGS = [tiling(warps=4, stages=1)]
else:
    ENCODE_CONFIGS = [
        tiling(warps=8, stages=3),
        tiling(warps=8, stages=1),
        tiling(warps=4, stages=2),
        tiling(warps=4, stages=1),
    ]


@triton.autotune(configs=ENCODE_CONFIGS, key=["dim", "BLOCK_N", "BLOCK_M", "HAS_ALLOWED"])
@triton.jit
def _topk_encode_kernel(
    # Pointers
    xc_ptr, w_ptr, b_enc_ptr, allowed_ptr, keys_ptr,
    # Sizes
    rows, dim, latents, latents_per_split,
    # Strides
    stride_xn, stride_xd, stride_wd, stride_wm, stride_kn, stride_ks,
    # Meta-parameters
    HAS_ALLOWED: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
    LOG_M: tl.constexpr, DOT_PRECISION: tl.constexpr, INDEX_BASE: tl.constexpr, TL_TOPK: tl.constexpr,
):  # fmt: skip
    row_ids = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    split = tl.program_id(1)
    row_inside = row_ids < rows
    begin = split * latents_per_split
    end = tl.minimum(begin + latents_per_split, latents)
    best = tl.full((BLOCK_N, BLOCK_M), -1, tl.int64)  # below every real key
    for start in range(begin, end, BLOCK_M):
        cols = start + tl.arange(0, BLOCK_M)
        col_inside = cols < end
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        for d0 in range(0, dim, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            xs = tl.load(
                xc_ptr + row_ids[:, None].to(tl.int64) * stride_xn + ds[None, :] * stride_xd,
                mask=row_inside[:, None] & (ds[None, :] < dim),
                other=0.0,
            )
            ws = tl.load(
                w_ptr + ds[:, None].to(tl.int64) * stride_wd + cols[None, :].to(tl.int64) * stride_wm,
                mask=(ds[:, None] < dim) & col_inside[None, :],
                other=0.0,
            )
            acc = tl.dot(xs, ws, acc, input_precision=DOT_PRECISION)
        acc += tl.load(b_enc_ptr + cols, mask=col_inside, other=0.0).to(tl.float32)[None, :]
        acts = tl.where(acc > 0, acc, 0.0)  # ReLU; also maps -0.0 and NaN to +0.0
        keys = (acts.to(tl.int32, bitcast=True).to(tl.int64) << 32) | (INDEX_BASE - cols).to(tl.int64)[None, :]
        selectable = col_inside
        if HAS_ALLOWED:
            selectable &= tl.load(allowed_ptr + cols, mask=col_inside, other=0) != 0
        keys = tl.where(selectable[None, :], keys, -1)
        # best is sorted descending, so its last column is each row's BLOCK_M-th best.
        beats = (keys > tl.min(best, axis=1)[:, None]).to(tl.int32)
        if tl.max(tl.max(beats, axis=1), axis=0) > 0:
            if TL_TOPK:
                best = tl.topk(tl.reshape(tl.join(best, keys), (BLOCK_N, 2 * BLOCK_M)), BLOCK_M)
            else:
                best = merge_top(best, keys, BLOCK_N, BLOCK_M, LOG_M)
    out_cols = tl.arange(0, BLOCK_M)
    tl.store(
        keys_ptr + row_ids[:, None].to(tl.int64) * stride_kn + split * stride_ks + out_cols[None, :],
        best,
        mask=row_inside[:, None],
    )


def merge_keys() -> int:
    return 4096 if not INTERPRETING and gpu_capability() >= 90 else 2048


def _block_sizes(rows: int, k: int) -> tuple[int, int]:
    block_m = max(64, triton.next_power_of_2(k))
    block_n = max(16, min(merge_keys() // block_m, triton.next_power_of_2(rows)))
    return block_n, block_m


def _split_count(row_blocks: int, latent_tiles: int, device: torch.device) -> int:
    """Latent ranges per row block: enough programs for two waves on a GPU, one range on the CPU."""
    if not on_gpu(device):
        return 1
    programs = 2 * multiprocessor_count(device)
    return max(1, min(latent_tiles, triton.cdiv(programs, row_blocks)))


def topk_keys(
    xc: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    k: int,
    allowed: torch.Tensor | None = None,
    splits: int | None = None,
) -> torch.Tensor:
    """The ``(N, k)`` selection keys of ``topk(relu(xc @ W_enc + b_enc), k)``, best first."""
    rows, dim = xc.shape
    latents = W_enc.shape[1]
    block_n, block_m = _block_sizes(rows, k)
    row_blocks, latent_tiles = triton.cdiv(rows, block_n), triton.cdiv(latents, block_m)
    splits = splits or _split_count(row_blocks, latent_tiles, xc.device)
    latents_per_split = triton.cdiv(latent_tiles, splits) * block_m
    splits = triton.cdiv(latents, latents_per_split)
    keys = torch.empty(rows, splits, block_m, dtype=torch.int64, device=xc.device)
    _topk_encode_kernel[(row_blocks, splits)](
        xc,
        W_enc,
        b_enc,
        allowed.view(torch.uint8) if allowed is not None else b_enc,
        keys,
        rows,
        dim,
        latents,
        latents_per_split,
        xc.stride(0),
        xc.stride(1),
        W_enc.stride(0),
        W_enc.stride(1),
        keys.stride(0),
        keys.stride(1),
        HAS_ALLOWED=allowed is not None,
        BLOCK_N=block_n,
        BLOCK_M=block_m,
        BLOCK_D=BLOCK_D,
        LOG_M=block_m.bit_length() - 1,
        DOT_PRECISION=dot_precision(xc.dtype),
        INDEX_BASE=INDEX_BASE,
        TL_TOPK=MERGE_WITH_TL_TOPK,
    )
    if splits == 1:
        return keys[:, 0, :k]
    return torch.topk(keys.view(rows, -1), k, dim=1).values


def decode_keys(keys: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    values = (keys >> 32).to(torch.int32).view(torch.float32).to(dtype)
    indices = INDEX_BASE - (keys & 0xFFFFFFFF)
    return values, indices


class TopKEncodeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, W_enc, b_enc, b_dec, k, allowed):
        xc = x - b_dec
        values, indices = decode_keys(topk_keys(xc, W_enc, b_enc, k, allowed), x.dtype)
        ctx.save_for_backward(xc, W_enc, values, indices)
        ctx.mark_non_differentiable(indices)
        return values, indices

    @staticmethod
    def backward(ctx, grad_values, _grad_indices):
        xc, W_enc, values, indices = ctx.saved_tensors
        # Where ReLU was inactive (value 0) the selected pre-activation gets no gradient.
        grad_pre = torch.where(values > 0, grad_values, 0).to(xc.dtype)
        grad_x = grad_W_enc = grad_b_enc = grad_b_dec = None
        needs_x, needs_w, needs_b_enc, needs_b_dec = ctx.needs_input_grad[:4]
        if needs_w or needs_b_enc:
            pairs = LatentPairs.from_indices(indices, W_enc.shape[1])
            grad_W_enc_t, grad_b_enc = latent_weighted_sums(pairs, grad_pre, xc, with_weight_sums=needs_b_enc)
            grad_W_enc = grad_W_enc_t.t() if needs_w else None
        if needs_x or needs_b_dec:
            grad_xc, _ = gather_rows(grad_pre, indices, W_enc.t())
            grad_x = grad_xc if needs_x else None
            grad_b_dec = -grad_xc.sum(0) if needs_b_dec else None
        return grad_x, grad_W_enc, grad_b_enc, grad_b_dec, None, None


def topk_encode(
    x: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    b_dec: torch.Tensor,
    k: int,
    allowed: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, indices)`` of ``topk(relu((x - b_dec) @ W_enc + b_enc), k)``; differentiable in values."""
    check_float_tensor("x", x, dims=2)
    rows, dim = x.shape
    check_same("W_enc", W_enc, x, shape=(dim, None))
    latents = W_enc.shape[1]
    check_same("b_enc", b_enc, x, shape=(latents,))
    check_same("b_dec", b_dec, x, shape=(dim,))
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(latents, MAX_K):
        raise ValueError(f"k: expected an int in [1, min(M={latents}, {MAX_K})], got {k!r}")
    if allowed is not None:
        if allowed.dtype != torch.bool or allowed.shape != (latents,) or allowed.device != x.device:
            raise ValueError(
                f"allowed: expected a bool tensor of shape ({latents},) on {x.device}, "
                f"got {allowed.dtype} {tuple(allowed.shape)} on {allowed.device}"
            )
        available = int(allowed.sum())
        if available < k:
            raise ValueError(f"allowed: only {available} latents are allowed, fewer than k={k}")
    return TopKEncodeFunction.apply(x, W_enc, b_enc, b_dec, k, allowed)
