"""``shapes_only()``: while active, torch's GEMMs and convolutions return outputs of the right shape, uncomputed.

The compile check drives each benchmark's call path to learn which Triton kernels it launches and with
which specializations (dtypes, divisibility, constexprs); under the compile-only driver those launches do
nothing, so every value on the path is already meaningless. What stays real is the torch work between
the kernels, and for a Mamba block's projections in half precision on a CPU without native half GEMMs
that work is most of the check's time (minutes per row). Shapes, strides and dtypes are what a launch's
specialization sees, so each such op is evaluated on the meta device and given a fresh, uninitialized
CPU output of that layout: the same allocation an evaluated op would make, so pointer alignment
(``div16``) is unchanged.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

_aten = torch.ops.aten
SHAPE_ONLY_OPS = frozenset(
    {
        _aten.mm.default,
        _aten.addmm.default,
        _aten.bmm.default,
        _aten.baddbmm.default,
        _aten.convolution.default,
        _aten.convolution_backward.default,
    }
)


def _to_meta(value):
    return value.to("meta") if isinstance(value, torch.Tensor) else value


def _uninitialized_like(value):
    if not isinstance(value, torch.Tensor):
        return value
    return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device="cpu")


class shapes_only(TorchDispatchMode):
    """Inside ``with shapes_only():`` the ops in ``SHAPE_ONLY_OPS`` allocate their outputs and compute nothing."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in SHAPE_ONLY_OPS:
            return func(*args, **kwargs)
        outputs = func(*tree_map(_to_meta, args), **tree_map(_to_meta, kwargs))
        return tree_map(_uninitialized_like, outputs)
