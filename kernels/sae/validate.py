"""The SAE launchers' shape rules, on top of ``kernels/validate.py``: a bad argument fails here,
named, not inside a kernel."""

import torch

from menagerie.kernels.validate import check_dtype


def check_float_tensor(name: str, tensor, dims: int) -> None:
    check_dtype(name, tensor)
    if tensor.dim() != dims:
        raise ValueError(f"{name}: expected {dims} dimensions, got shape {tuple(tensor.shape)}")


def check_same(name: str, tensor, like: torch.Tensor, shape: tuple) -> None:
    """``tensor`` has ``like``'s dtype and device and ``shape`` (``None`` matches any size)."""
    check_float_tensor(name, tensor, dims=len(shape))
    if tensor.dtype != like.dtype or tensor.device != like.device:
        raise TypeError(
            f"{name}: expected {like.dtype} on {like.device} like the other inputs, "
            f"got {tensor.dtype} on {tensor.device}"
        )
    if any(want is not None and want != got for want, got in zip(shape, tensor.shape)):
        expected = ", ".join("*" if size is None else str(size) for size in shape)
        raise ValueError(f"{name}: expected shape ({expected}), got {tuple(tensor.shape)}")


def check_indices(indices, values: torch.Tensor, latents: int, index_range: bool = True) -> None:
    """dtype, shape and device of ``indices``; with ``index_range`` also that each is in ``[0, latents)``."""
    if not isinstance(indices, torch.Tensor) or indices.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"indices: expected an int64 or int32 tensor, got {getattr(indices, 'dtype', type(indices))}")
    if indices.shape != values.shape or indices.device != values.device:
        raise ValueError(
            f"indices: expected shape {tuple(values.shape)} on {values.device} like values, "
            f"got {tuple(indices.shape)} on {indices.device}"
        )
    if index_range and indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= latents):
        raise ValueError(
            f"indices: expected latent indices in [0, {latents}), got [{int(indices.min())}, {int(indices.max())}]"
        )
