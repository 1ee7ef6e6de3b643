"""Per-latent weighted row sums: the weight gradients of a TopK SAE without a dense ``(N, M)`` matrix.

With ``indices`` ``(N, k)`` saying which latents each row selected and ``weights``
``(N, k)`` one number per selection, ``out[m] = sum weights[n, j] * rows[n]`` over the
pairs ``(n, j)`` with ``indices[n, j] == m`` (zero for latents nobody selected), and
optionally ``weight_sums[m] = sum weights[n, j]``. The decoder's ``dW_dec`` is this
with ``weights = values`` and ``rows = dL/drecon``; the encoder's ``dW_enc`` (as
``(M, d)``) and ``db_enc`` are this with ``weights = dL/dpre`` and ``rows = x - b_dec``.

The pairs are sorted by latent once (a stable sort, so each latent's pairs stay in
row order), and one program per latent adds its pairs in that order: the result is
deterministic and needs no atomics.
"""

from typing import NamedTuple

import torch
import triton
import triton.language as tl

BLOCK_PAIRS = 16
MAX_BLOCK_D = 512


class LatentPairs(NamedTuple):
    """The selections grouped by latent: ``order`` lists flat pair ids (``n * k + j``) by latent,
    and latent ``m``'s pairs are ``order[offsets[m]:offsets[m + 1]]``."""

    order: torch.Tensor
    offsets: torch.Tensor
    k: int
    latents: int

    @classmethod
    def from_indices(cls, indices: torch.Tensor, latents: int) -> "LatentPairs":
        # Offsets by binary search over the sorted latents: defined for any index values (an
        # out-of-range one falls in no latent's range), unlike a bincount.
        by_latent, order = torch.sort(indices.reshape(-1), stable=True)
        offsets = torch.searchsorted(by_latent, torch.arange(latents + 1, device=indices.device, dtype=by_latent.dtype))
        return cls(order, offsets, indices.shape[1], latents)


@triton.jit
def _latent_sums_kernel(
    # Pointers
    order_ptr, offsets_ptr, weights_ptr, rows_ptr, out_ptr, weight_sums_ptr,
    # Sizes
    dim, k,
    # Strides
    stride_rn, stride_om,
    # Meta-parameters
    WITH_WEIGHT_SUMS: tl.constexpr, BLOCK_PAIRS: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    latent = tl.program_id(0)
    first = tl.load(offsets_ptr + latent)
    last = tl.load(offsets_ptr + latent + 1)
    out_row = out_ptr + latent.to(tl.int64) * stride_om
    for d0 in range(0, dim, BLOCK_D):
        ds = d0 + tl.arange(0, BLOCK_D)
        acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
        for p0 in range(first, last, BLOCK_PAIRS):
            slots = p0 + tl.arange(0, BLOCK_PAIRS)
            inside = slots < last
            pairs = tl.load(order_ptr + slots, mask=inside, other=0)
            weights = tl.load(weights_ptr + pairs, mask=inside, other=0.0).to(tl.float32)
            tokens = pairs // k
            rows = tl.load(
                rows_ptr + tokens[:, None] * stride_rn + ds[None, :],
                mask=inside[:, None] & (ds[None, :] < dim),
                other=0.0,
            ).to(tl.float32)
            acc += tl.sum(weights[:, None] * rows, axis=0)
        tl.store(out_row + ds, acc.to(out_ptr.dtype.element_ty), mask=ds < dim)
    if WITH_WEIGHT_SUMS:
        total = tl.zeros((BLOCK_PAIRS,), dtype=tl.float32)
        for p0 in range(first, last, BLOCK_PAIRS):
            slots = p0 + tl.arange(0, BLOCK_PAIRS)
            pairs = tl.load(order_ptr + slots, mask=slots < last, other=0)
            total += tl.load(weights_ptr + pairs, mask=slots < last, other=0.0).to(tl.float32)
        tl.store(weight_sums_ptr + latent, tl.sum(total, axis=0).to(weight_sums_ptr.dtype.element_ty))


def latent_weighted_sums(
    pairs: LatentPairs, weights: torch.Tensor, rows: torch.Tensor, with_weight_sums: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(out (M, d), weight_sums (M,) or None)`` in ``rows``' dtype, accumulated in float32."""
    rows = rows.contiguous()
    weights = weights.contiguous()
    out = torch.empty(pairs.latents, rows.shape[1], dtype=rows.dtype, device=rows.device)
    weight_sums = torch.empty(pairs.latents, dtype=rows.dtype, device=rows.device) if with_weight_sums else None
    _latent_sums_kernel[(pairs.latents,)](
        pairs.order,
        pairs.offsets,
        weights,
        rows,
        out,
        weight_sums if with_weight_sums else out,
        rows.shape[1],
        pairs.k,
        rows.stride(0),
        out.stride(0),
        WITH_WEIGHT_SUMS=with_weight_sums,
        BLOCK_PAIRS=BLOCK_PAIRS,
        BLOCK_D=min(MAX_BLOCK_D, triton.next_power_of_2(rows.shape[1])),
    )
    return out, weight_sums
