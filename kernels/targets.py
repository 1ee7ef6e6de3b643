"""Where the Triton kernels run: on a CUDA device, under Triton's CPU interpreter, or compile-only.

``INTERPRETING`` is fixed when the kernels are imported (``TRITON_INTERPRET=1``, set by
``kernels/__init__.py`` on a machine without CUDA). Compile-only is ``menagerie compile``:
a Triton driver that builds for a chosen GPU architecture from CPU tensors and launches
nothing (``harness/compile_driver.py``); kernel wrappers then take the GPU's code paths.
"""

import os

import torch

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"


def compile_only() -> bool:
    """True while a compile-only Triton driver is active."""
    if INTERPRETING:
        return False
    from triton.runtime import driver

    # The set driver itself: `driver.active` would create the default one, which fails without a GPU.
    return getattr(driver._active, "compile_only", False)


def on_gpu(device: torch.device) -> bool:
    """Whether kernels on ``device`` take the GPU's code paths (block sizes, grid splits)."""
    return device.type == "cuda" or compile_only()


def check_kernel_device(name: str, tensor: torch.Tensor) -> None:
    """Triton kernels need a CUDA tensor, unless interpreted or compile-only."""
    if tensor.device.type != "cuda" and not INTERPRETING and not compile_only():
        raise ValueError(f"{name}: expected a CUDA tensor (or TRITON_INTERPRET=1), got device {tensor.device}")


def multiprocessor_count(device: torch.device) -> int:
    """Streaming multiprocessors of the GPU the kernels run (or are compiled) for."""
    return _device_properties(device.index)["multiprocessor_count"]


def max_shared_memory() -> int:
    """Bytes of shared memory a block may use on the GPU the kernels run (or are compiled) for."""
    return _device_properties(None)["max_shared_mem"]


def gpu_capability() -> int:
    """Compute capability (80, 90, ...) of the GPU the kernels run (or are compiled) for."""
    from triton.runtime import driver

    return driver.active.get_current_target().arch


def _device_properties(index: int | None) -> dict:
    from triton.runtime import driver

    active = driver.active
    return active.utils.get_device_properties(active.get_current_device() if index is None else index)
