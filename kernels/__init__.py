"""Optimized kernels, each beside its plain-PyTorch reference.

Without a CUDA device, Triton can only run under its interpreter, which must be
switched on before triton is imported; importing any kernel module goes through
this package first, so the switch lives here.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
