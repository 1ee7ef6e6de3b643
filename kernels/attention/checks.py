"""The sliding-window attention's input checks: every argument is checked before a launch, and
an error names the argument (``kernels/validate.py`` for what the families share).

``check_attention_inputs`` (dense) and ``check_tensors`` + ``check_settings`` +
``check_cu_seqlens`` (packed) return the settings normalized for the launchers.
"""

import math
import numbers
import operator

import torch

from menagerie.kernels.attention.mask import window_bounds
from menagerie.kernels.targets import check_kernel_device
from menagerie.kernels.validate import check_dtype, check_tensor

MAX_HEAD_DIM = 256


def _as_index(value, name: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {value!r}") from None


def check_tensors(q, k, v, packed: bool) -> None:
    """q, k and v: float tensors of one dtype on one device, with compatible shapes and a supported head dim."""
    dims, layout = (3, "(total, heads, head_dim)") if packed else (4, "(batch, heads, length, head_dim)")
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, tensor)
        if tensor.dim() != dims:
            raise ValueError(f"{name}: expected {dims} dimensions {layout}, got shape {tuple(tensor.shape)}")
        check_dtype(name, tensor)
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"k, v: expected dtype {q.dtype} like q, got {k.dtype} and {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"k, v: expected device {q.device} like q, got {k.device} and {v.device}")
    check_kernel_device("q", q)
    if k.shape != v.shape:
        raise ValueError(f"v: expected the shape of k {tuple(k.shape)}, got {tuple(v.shape)}")
    if packed and k.shape[2] != q.shape[2]:
        raise ValueError(f"k: head_dim must match q's {q.shape[2]}, got shape {tuple(k.shape)}")
    if not packed and (k.shape[0] != q.shape[0] or k.shape[3] != q.shape[3]):
        raise ValueError(
            f"k: batch and head_dim must match q's {q.shape[0]} and {q.shape[3]}, got shape {tuple(k.shape)}"
        )
    heads, kv_heads = q.shape[-2 if packed else 1], k.shape[-2 if packed else 1]
    if kv_heads == 0 or heads % kv_heads:
        raise ValueError(f"q: {heads} heads is not a multiple of the {kv_heads} key/value heads of k")
    head_dim = q.shape[-1]
    if head_dim < 8 or head_dim > MAX_HEAD_DIM or head_dim % 8:
        raise ValueError(f"q: head_dim must be a multiple of 8 from 8 to {MAX_HEAD_DIM}, got {head_dim}")


def check_settings(window, sinks, scale, softcap, end_sinks) -> tuple:
    """``((left, right), sinks, scale, softcap, end_sinks)`` normalized; errors name the argument."""
    window = window_bounds(window)
    sinks, end_sinks = _as_index(sinks, "sinks"), _as_index(end_sinks, "end_sinks")
    for name, count in (("sinks", sinks), ("end_sinks", end_sinks)):
        if count < 0:
            raise ValueError(f"{name}: expected an integer >= 0, got {count}")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            raise TypeError(f"scale: expected a real number, got {scale!r}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale: expected a positive finite number, got {scale!r}")
        scale = float(scale)
    if isinstance(softcap, bool) or not isinstance(softcap, numbers.Real):
        raise TypeError(f"softcap: expected a real number, got {softcap!r}")
    if not (math.isfinite(softcap) and softcap >= 0):
        raise ValueError(f"softcap: expected a finite number >= 0 (0: off), got {softcap!r}")
    return window, sinks, scale, float(softcap), end_sinks


def check_attention_inputs(q, k, v, window, sinks, scale, softcap=0.0, end_sinks=0):
    """Validate the dense arguments (errors name the argument); return ``((left, right), sinks, scale,
    softcap, end_sinks)`` normalized."""
    check_tensors(q, k, v, packed=False)
    return check_settings(window, sinks, scale, softcap, end_sinks)


def check_cu_seqlens(q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k) -> tuple[int, int]:
    """Offsets: int32, 1-D, ``batch + 1`` long each, on q's device, from 0 to the packed length, never
    decreasing, no sequence longer than its max length. The values are read on the host (a device
    sync), except while a CUDA graph is being captured."""
    for name, cu in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        check_tensor(name, cu)
        if cu.dtype != torch.int32:
            raise TypeError(f"{name}: expected dtype torch.int32, got {cu.dtype}")
        if cu.dim() != 1 or cu.numel() < 1:
            raise ValueError(f"{name}: expected a 1-D tensor of batch + 1 offsets, got shape {tuple(cu.shape)}")
        if cu.device != q.device:
            raise ValueError(f"{name}: expected device {q.device} like q, got {cu.device}")
    if cu_seqlens_q.numel() != cu_seqlens_k.numel():
        raise ValueError(
            f"cu_seqlens_k: expected {cu_seqlens_q.numel()} offsets like cu_seqlens_q, got {cu_seqlens_k.numel()}"
        )
    max_seqlen_q, max_seqlen_k = _as_index(max_seqlen_q, "max_seqlen_q"), _as_index(max_seqlen_k, "max_seqlen_k")
    capturing = q.device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    for name, cu, total, longest in (
        ("cu_seqlens_q", cu_seqlens_q, q.shape[0], max_seqlen_q),
        ("cu_seqlens_k", cu_seqlens_k, k.shape[0], max_seqlen_k),
    ):
        max_name = name.replace("cu_seqlens", "max_seqlen")
        if longest < 0:
            raise ValueError(f"{max_name}: expected an integer >= 0, got {longest}")
        if capturing:
            continue
        offsets = cu.tolist()
        if offsets[0] != 0 or offsets[-1] != total:
            raise ValueError(
                f"{name}: expected offsets from 0 to the packed length {total}, got {offsets[0]} ... {offsets[-1]}"
            )
        lengths = [end - start for start, end in zip(offsets, offsets[1:])]
        if any(length < 0 for length in lengths):
            raise ValueError(f"{name}: offsets must not decrease, got {offsets}")
        if lengths and max(lengths) > longest:
            raise ValueError(f"{max_name}: {longest} is shorter than the longest sequence in {name} ({max(lengths)})")
    return max_seqlen_q, max_seqlen_k
