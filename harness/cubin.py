"""What a compiled kernel (a cubin) uses, read with the CUDA tools that ship in Triton's wheel.

``resources``: registers per thread, stack and local memory per thread (spills), and
static shared memory, from ``cuobjdump --dump-resource-usage``. ``tensor_core_ops``:
the tensor-core instruction mnemonics in the SASS, from ``nvdisasm``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


class ToolError(RuntimeError):
    """A CUDA binary tool is missing or failed."""


def tool(name: str) -> str:
    """Path of ``cuobjdump``/``nvdisasm``: Triton's bundled copy first, then the PATH."""
    import triton.backends.nvidia as nvidia

    bundled = Path(nvidia.__file__).parent / "bin" / name
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    found = shutil.which(name)
    if found is None:
        raise ToolError(f"{name} not found: neither in Triton's wheel ({bundled.parent}) nor on the PATH")
    return found


@dataclass(frozen=True)
class Resources:
    registers: int
    stack_bytes: int  # per thread; spilled registers live here
    local_bytes: int  # per thread
    static_shared_bytes: int

    @property
    def spills(self) -> bool:
        return self.stack_bytes > 0 or self.local_bytes > 0


_USAGE = re.compile(r"REG:(\d+)\s+STACK:(\d+)\s+SHARED:(\d+)\s+LOCAL:(\d+)")


def _run(args: list[str], cubin: bytes) -> str:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as handle:
        handle.write(cubin)
        handle.flush()
        done = subprocess.run([*args, handle.name], capture_output=True, text=True)
    if done.returncode:
        raise ToolError(
            f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
        )
    return done.stdout


def resources(cubin: bytes, function: str) -> Resources:
    """Resource usage of ``function`` in ``cubin``."""
    text = _run([tool("cuobjdump"), "--dump-resource-usage"], cubin)
    sections = re.split(r"\n\s*Function\s+", text)
    for section in sections[1:]:
        name, _, body = section.partition(":")
        if name.strip() == function:
            match = _USAGE.search(body)
            if match:
                reg, stack, shared, local = (int(value) for value in match.groups())
                return Resources(registers=reg, stack_bytes=stack, local_bytes=local, static_shared_bytes=shared)
    raise ToolError(f"cuobjdump reported no resource usage for {function!r}")


_MNEMONIC = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", re.MULTILINE)


def sass_mnemonics(cubin: bytes) -> set[str]:
    """Every instruction mnemonic (without modifiers) in the cubin's SASS."""
    return set(_MNEMONIC.findall(_run([tool("nvdisasm"), "--print-code"], cubin)))


def tensor_core_ops(cubin: bytes, candidates: tuple[str, ...]) -> list[str]:
    """The ``candidates`` (tensor-core mnemonics of the arch) present in the SASS."""
    found = sass_mnemonics(cubin)
    return [name for name in candidates if name in found]
