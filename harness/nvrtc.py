"""Compile CUDA C to a cubin with NVRTC, the compiler CuPy's ``RawModule`` uses, without a GPU.

NVRTC ships as a shared library in NVIDIA's pip packages (the CUDA build of torch brings
``nvidia/cu13/lib/libnvrtc.so.13``; ``pip install nvidia-cuda-nvrtc`` brings it alone).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import site
import sys


class NvrtcError(RuntimeError):
    """NVRTC is missing, or the program did not compile (the message holds its log)."""


def _candidates() -> list[str]:
    roots = [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
    found = []
    for root in dict.fromkeys(roots):
        for pattern in ("nvidia/cu*/lib/libnvrtc.so*", "nvidia/cuda_nvrtc/lib/libnvrtc.so*"):
            found += sorted(
                path
                for path in glob.glob(os.path.join(root, pattern))
                if "builtins" not in path and ".alt." not in path
            )
    system = ctypes.util.find_library("nvrtc")
    return found + ([system] if system else [])


@functools.cache
def _loaded() -> tuple[ctypes.CDLL, str | None]:
    """NVRTC and a folder of CUDA headers (``cuda_fp16.h``...), which NVRTC does not find alone."""
    errors = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as error:
            errors.append(str(error))
            continue
        return lib, _headers(os.path.join(os.path.dirname(os.path.dirname(path)), "include"))
    raise NvrtcError(
        "NVRTC not found: install the CUDA build of torch or `pip install nvidia-cuda-nvrtc`"
        + (f" ({'; '.join(errors)})" if errors else "")
    )


def _headers(beside_library: str) -> str | None:
    """The CUDA headers beside NVRTC, else the copy in Triton's wheel (the nvrtc wheel ships none)."""
    import triton.backends.nvidia as nvidia

    for folder in (beside_library, os.path.join(os.path.dirname(nvidia.__file__), "include")):
        if os.path.isfile(os.path.join(folder, "cuda_fp16.h")):
            return folder
    return None


def library() -> ctypes.CDLL:
    return _loaded()[0]


def version() -> str:
    major, minor = ctypes.c_int(), ctypes.c_int()
    library().nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return f"{major.value}.{minor.value}"


def _check(lib, status: int, what: str) -> None:
    if status:
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise NvrtcError(f"{what}: {lib.nvrtcGetErrorString(status).decode()}")


def compile_cubin(source: str, name: str, options: tuple[str, ...], capability: int) -> bytes:
    """The cubin of ``source`` for ``sm_<capability>``, compiled with ``options`` (as CuPy passes them)."""
    lib = library()
    program = ctypes.c_void_p()
    _check(
        lib,
        lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), f"{name}.cu".encode(), 0, None, None),
        "nvrtcCreateProgram",
    )
    try:
        include = _loaded()[1]
        flags = [f"--gpu-architecture=sm_{capability}", *options, *([f"-I{include}"] if include else [])]
        array = (ctypes.c_char_p * len(flags))(*(flag.encode() for flag in flags))
        status = lib.nvrtcCompileProgram(program, len(flags), array)
        if status:
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(program, log)
            raise NvrtcError(
                f"{name} did not compile for sm_{capability}: {log.value.decode(errors='replace').strip()}"
            )
        size = ctypes.c_size_t()
        _check(lib, lib.nvrtcGetCUBINSize(program, ctypes.byref(size)), "nvrtcGetCUBINSize")
        binary = ctypes.create_string_buffer(size.value)
        _check(lib, lib.nvrtcGetCUBIN(program, binary), "nvrtcGetCUBIN")
        return binary.raw
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))
