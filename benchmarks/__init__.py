"""One module per family, each declaring its benchmarks to the harness registry.

``kernels`` is imported here, before any family module imports triton, so that on a
machine without a GPU it switches Triton's interpreter on in time (``kernels/__init__.py``).
That only works if ``kernels`` is this suite's package: another distribution with a
top-level ``kernels`` (HuggingFace's, which transformers 5.25 requires) can come first on
the path, and then the switch never runs.
"""

from pathlib import Path

import torch

import kernels

SUITE_KERNELS = Path(__file__).resolve().parent.parent / "kernels"
if Path(kernels.__file__).resolve().parent != SUITE_KERNELS:
    raise ImportError(
        f"benchmarks: `import kernels` found {kernels.__file__}, not this suite's {SUITE_KERNELS}: another "
        "installed distribution has a top-level package named `kernels` (HuggingFace's, a dependency of "
        "transformers 5.25 and later). Uninstall it (`pip uninstall kernels`, with transformers<5.25) or run "
        "from a checkout with its root first on PYTHONPATH", name="kernels")


def interpreted_bf16(case, device, dtype, mode):
    """Skip reason for Triton code in bf16 on the CPU, where Triton's interpreter computes bf16 wrongly."""
    if device.type == "cpu" and dtype == torch.bfloat16:
        return "Triton's CPU interpreter has no correct bf16 arithmetic; bf16 is checked on a GPU"
    return None
