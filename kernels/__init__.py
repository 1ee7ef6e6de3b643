"""Optimized kernels, each beside its plain-PyTorch reference.

Without a CUDA device, Triton can only run under its interpreter, which must be
switched on before triton is imported: ``triton.language``'s own ``@triton.jit``
helpers (``tl.sigmoid``, ``tl.cdiv``, ...) are built when triton is imported, and
built for a GPU they cannot be called from an interpreted kernel. Importing any
kernel module goes through this package first, so the switch lives here, and a
triton imported too early is an error here rather than a failure inside the
first kernel call.
"""

import os
import sys

import torch

if not torch.cuda.is_available() and "TRITON_INTERPRET" not in os.environ:
    if "triton" in sys.modules:
        raise ImportError(
            "menagerie.kernels: triton was imported before menagerie.kernels on a machine without CUDA, so "
            "Triton's own jitted functions were built for a GPU and its interpreter cannot run them; import "
            "menagerie.kernels (or any menagerie.kernels.* module) before triton, or set TRITON_INTERPRET=1 in "
            "the environment",
            name="menagerie.kernels",
        )
    os.environ["TRITON_INTERPRET"] = "1"
