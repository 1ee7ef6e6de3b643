"""One module per family, each declaring its benchmarks to the harness registry.

The harness finds the families through the ``menagerie.benchmarks`` entry points
(``pyproject.toml``), and loading any of them imports this package first, which imports
``menagerie.kernels`` before any family module imports triton: on a machine without a
GPU that switches Triton's interpreter on in time (``kernels/__init__.py``).
"""

import torch

import menagerie.kernels  # noqa: F401  (before triton: the interpreter switch)


def interpreted_bf16(case, device, dtype, mode):
    """Skip reason for Triton code in bf16 on the CPU, where Triton's interpreter computes bf16 wrongly."""
    if device.type == "cpu" and dtype == torch.bfloat16:
        return "Triton's CPU interpreter has no correct bf16 arithmetic; bf16 is checked on a GPU"
    return None
