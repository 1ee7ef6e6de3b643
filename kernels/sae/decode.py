"""Sparse TopK decoder by gather: ``recon = sum_j values[:, j] * W_dec[indices[:, j]] + b_dec``.

values ``(N, k)`` (fp32, fp16 or bf16, like W_dec), indices ``(N, k)`` int64 or int32
in ``[0, M)``, W_dec ``(M, d)``, b_dec ``(d,)``. Nothing ``(N, M)`` is formed: each
program sums ``k`` gathered rows of W_dec for a block of rows and columns, in float32.

``sparse_decode_mse`` fuses the MSE against a target into the same pass: it writes
the residual ``recon - target`` (which the backward needs anyway) instead of the
reconstruction, with one partial sum of squares per program, summed in a fixed
order. It returns ``(loss, residual)``, the residual detached (AuxK fits it).

Backward, with ``G = dL/drecon``: ``dvalues[n, j] = G[n] . W_dec[indices[n, j]]``
(k dot products per row, one kernel), ``dW_dec`` by per-latent sums (deterministic,
see ``latent_sums``), ``db_dec = G.sum(0)``.
"""

import torch
import triton
import triton.language as tl

from menagerie.kernels.sae.latent_sums import LatentPairs, latent_weighted_sums
from menagerie.kernels.sae.validate import check_float_tensor, check_indices, check_same

BLOCK_N = 16
BLOCK_D = 128
DOTS_BLOCK_N = 4
DOTS_BLOCK_K = 16
DOTS_BLOCK_D = 64


@triton.jit
def _gather_rows_kernel(
    # Pointers
    values_ptr, indices_ptr, table_ptr, bias_ptr, target_ptr, out_ptr, partial_ptr,
    # Sizes
    rows, dim, k,
    # Strides
    stride_vn, stride_in, stride_tm, stride_td, stride_on,
    # Meta-parameters
    HAS_BIAS: tl.constexpr, HAS_TARGET: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_n, pid_d = tl.program_id(0), tl.program_id(1)
    row_ids = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ds = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    row_inside = row_ids < rows
    inside = row_inside[:, None] & (ds[None, :] < dim)
    acc = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    for j in range(k):
        value = tl.load(values_ptr + row_ids.to(tl.int64) * stride_vn + j, mask=row_inside, other=0.0)
        latent = tl.load(indices_ptr + row_ids.to(tl.int64) * stride_in + j, mask=row_inside, other=0)
        table = tl.load(
            table_ptr + latent[:, None].to(tl.int64) * stride_tm + ds[None, :] * stride_td, mask=inside, other=0.0
        )
        acc += value.to(tl.float32)[:, None] * table.to(tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + ds, mask=ds < dim, other=0.0).to(tl.float32)[None, :]
    out_offsets = row_ids[:, None].to(tl.int64) * stride_on + ds[None, :]
    if HAS_TARGET:
        acc -= tl.load(target_ptr + out_offsets, mask=inside, other=0.0).to(tl.float32)
        acc = tl.where(inside, acc, 0.0)
        tl.store(partial_ptr + pid_n * tl.num_programs(1) + pid_d, tl.sum(tl.sum(acc * acc, axis=1), axis=0))
    tl.store(out_ptr + out_offsets, acc.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _gathered_dots_kernel(
    # Pointers
    grad_ptr, indices_ptr, table_ptr, out_ptr,
    # Sizes
    rows, dim, k,
    # Strides
    stride_gn, stride_in, stride_tm, stride_on,
    # Meta-parameters
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    row_ids = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    slots = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    pair_inside = (row_ids[:, None] < rows) & (slots[None, :] < k)
    latents = tl.load(
        indices_ptr + row_ids[:, None].to(tl.int64) * stride_in + slots[None, :], mask=pair_inside, other=0
    )
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for d0 in range(0, dim, BLOCK_D):
        ds = d0 + tl.arange(0, BLOCK_D)
        d_inside = ds < dim
        grad = tl.load(
            grad_ptr + row_ids[:, None].to(tl.int64) * stride_gn + ds[None, :],
            mask=(row_ids[:, None] < rows) & d_inside[None, :],
            other=0.0,
        ).to(tl.float32)
        table = tl.load(
            table_ptr + latents[:, :, None].to(tl.int64) * stride_tm + ds[None, None, :],
            mask=pair_inside[:, :, None] & d_inside[None, None, :],
            other=0.0,
        ).to(tl.float32)
        acc += tl.sum(grad[:, None, :] * table, axis=2)
    tl.store(
        out_ptr + row_ids[:, None].to(tl.int64) * stride_on + slots[None, :],
        acc.to(out_ptr.dtype.element_ty),
        mask=pair_inside,
    )


def gather_rows(
    values: torch.Tensor,
    indices: torch.Tensor,
    table: torch.Tensor,
    bias: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``sum_j values[:, j] * table[indices[:, j]] (+ bias) (- target)``; with a target also the
    per-program partial sums of squares. ``table`` may have any strides."""
    rows, k = values.shape
    dim = table.shape[1]
    values, indices = values.contiguous(), indices.contiguous()
    out = torch.empty(rows, dim, dtype=table.dtype, device=table.device)
    grid = (triton.cdiv(rows, BLOCK_N), triton.cdiv(dim, BLOCK_D))
    partial = torch.empty(grid, dtype=torch.float32, device=table.device) if target is not None else None
    _gather_rows_kernel[grid](
        values,
        indices,
        table,
        bias if bias is not None else out,
        target.contiguous() if target is not None else out,
        out,
        partial if partial is not None else out,
        rows,
        dim,
        k,
        values.stride(0),
        indices.stride(0),
        table.stride(0),
        table.stride(1),
        out.stride(0),
        HAS_BIAS=bias is not None,
        HAS_TARGET=target is not None,
        BLOCK_N=BLOCK_N,
        BLOCK_D=BLOCK_D,
    )
    return out, partial


def gathered_dots(grad: torch.Tensor, indices: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``out[n, j] = grad[n] . table[indices[n, j]]``, ``(N, k)`` in ``grad``'s dtype."""
    rows, k = indices.shape
    grad, indices, table = grad.contiguous(), indices.contiguous(), table.contiguous()
    out = torch.empty(rows, k, dtype=grad.dtype, device=grad.device)
    grid = (triton.cdiv(rows, DOTS_BLOCK_N), triton.cdiv(k, DOTS_BLOCK_K))
    _gathered_dots_kernel[grid](
        grad,
        indices,
        table,
        out,
        rows,
        table.shape[1],
        k,
        grad.stride(0),
        indices.stride(0),
        table.stride(0),
        out.stride(0),
        BLOCK_N=DOTS_BLOCK_N,
        BLOCK_K=DOTS_BLOCK_K,
        BLOCK_D=DOTS_BLOCK_D,
    )
    return out


def _decode_backward(ctx, grad_recon, values, indices, W_dec):
    """Gradients of (values, W_dec, b_dec) from ``dL/drecon``."""
    needs_values, _, needs_w, needs_b = ctx.needs_input_grad[:4]
    grad_values = gathered_dots(grad_recon, indices, W_dec) if needs_values else None
    grad_W_dec = None
    if needs_w:
        grad_W_dec, _ = latent_weighted_sums(LatentPairs.from_indices(indices, W_dec.shape[0]), values, grad_recon)
    grad_b_dec = grad_recon.sum(0) if needs_b else None
    return grad_values, grad_W_dec, grad_b_dec


class SparseDecodeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, indices, W_dec, b_dec):
        recon, _ = gather_rows(values, indices, W_dec, b_dec)
        ctx.save_for_backward(values, indices, W_dec)
        return recon

    @staticmethod
    def backward(ctx, grad_recon):
        values, indices, W_dec = ctx.saved_tensors
        grad_values, grad_W_dec, grad_b_dec = _decode_backward(ctx, grad_recon.contiguous(), values, indices, W_dec)
        return grad_values, None, grad_W_dec, grad_b_dec


class SparseDecodeMSEFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, indices, W_dec, b_dec, target):
        residual, partial = gather_rows(values, indices, W_dec, b_dec, target)
        ctx.save_for_backward(values, indices, W_dec, residual)
        ctx.mark_non_differentiable(residual)
        return (partial.sum() / residual.numel()).to(residual.dtype), residual

    @staticmethod
    def backward(ctx, grad_loss, _grad_residual):
        values, indices, W_dec, residual = ctx.saved_tensors
        grad_recon = residual * (2 * grad_loss / residual.numel()).to(residual.dtype)
        grad_values, grad_W_dec, grad_b_dec = _decode_backward(ctx, grad_recon, values, indices, W_dec)
        grad_target = -grad_recon if ctx.needs_input_grad[4] else None
        return grad_values, None, grad_W_dec, grad_b_dec, grad_target


def _check_decode_inputs(values, indices, W_dec, b_dec, index_range: bool):
    check_float_tensor("values", values, dims=2)
    check_same("W_dec", W_dec, values, shape=(None, None))
    check_same("b_dec", b_dec, values, shape=(W_dec.shape[1],))
    check_indices(indices, values, W_dec.shape[0], index_range)


def sparse_decode(
    values: torch.Tensor,
    indices: torch.Tensor,
    W_dec: torch.Tensor,
    b_dec: torch.Tensor,
    check_index_range: bool = True,
):
    """``(N, d)`` reconstruction from ``k`` active latents per row; differentiable in values, W_dec, b_dec.

    ``check_index_range=False`` skips the range check of ``indices`` (a device sync) for indices
    that ``topk_encode`` produced, which are in range by construction.
    """
    _check_decode_inputs(values, indices, W_dec, b_dec, check_index_range)
    return SparseDecodeFunction.apply(values, indices, W_dec, b_dec)


def sparse_decode_mse(
    values: torch.Tensor,
    indices: torch.Tensor,
    W_dec: torch.Tensor,
    b_dec: torch.Tensor,
    target: torch.Tensor,
    check_index_range: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean((recon - target)**2), recon - target)`` in one pass; the loss is differentiable.
    ``check_index_range`` as for ``sparse_decode``."""
    _check_decode_inputs(values, indices, W_dec, b_dec, check_index_range)
    check_same("target", target, values, shape=(values.shape[0], W_dec.shape[1]))
    return SparseDecodeMSEFunction.apply(values, indices, W_dec, b_dec, target)
