"""Packed sequences for the SSD scan: which sequence each step belongs to.

mamba-ssm's ``mamba_chunk_scan_combined`` packs several sequences into one row of steps and
says where each begins either by ``seq_idx`` ``(batch, L)``, the sequence of every step
(non-decreasing integers, equal within a sequence), or by ``cu_seqlens`` ``[0, ..., L]`` with
batch 1, the bounds of sequence ``b`` being ``cu_seqlens[b]:cu_seqlens[b + 1]`` (empty ones
allowed). Both say the same thing; the kernel and the references take the first.
"""

from __future__ import annotations

import torch

from menagerie.kernels.validate import check_device, check_tensor


def packed_sequence_ids(x, seq_idx=None, cu_seqlens=None):
    """The ``(batch, L)`` int32 sequence of each step from ``seq_idx`` or ``cu_seqlens`` (or None
    for neither); raises a TypeError or ValueError naming the argument that does not fit."""
    batch, length = x.shape[:2]
    for name, tensor in (("seq_idx", seq_idx), ("cu_seqlens", cu_seqlens)):
        if tensor is None:
            continue
        check_tensor(name, tensor)
        if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
            raise TypeError(f"{name}: expected an integer dtype, got {tensor.dtype}")
        check_device(name, tensor, "x", x)
        if tensor.numel() > 1 and bool((tensor.diff(dim=-1) < 0).any()):
            raise ValueError(f"{name}: expected non-decreasing values (each sequence's steps contiguous)")
    from_bounds = None
    if cu_seqlens is not None:
        if batch != 1:
            raise ValueError(f"cu_seqlens: packed sequences need x with batch 1, got batch {batch}")
        if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2 or int(cu_seqlens[0]) != 0 or int(cu_seqlens[-1]) != length:
            raise ValueError(
                f"cu_seqlens: expected [0, ..., L = {length}] (one more entry than sequences), "
                f"got {cu_seqlens.tolist() if cu_seqlens.numel() <= 8 else tuple(cu_seqlens.shape)}"
            )
        steps = torch.arange(length, device=x.device)
        from_bounds = torch.searchsorted(cu_seqlens[1:].long(), steps, right=True)[None]
    if seq_idx is None:
        return None if from_bounds is None else from_bounds.to(torch.int32)
    if tuple(seq_idx.shape) != (batch, length):
        raise ValueError(f"seq_idx: expected shape {(batch, length)}, got {tuple(seq_idx.shape)}")
    if from_bounds is not None and not bool((from_bounds.diff() == 0).eq(seq_idx.diff() == 0).all()):
        raise ValueError("seq_idx and cu_seqlens: they place the sequence boundaries differently")
    return seq_idx.to(torch.int32)
