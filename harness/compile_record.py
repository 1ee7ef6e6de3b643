"""The committed compile record: what each compile unit gave, keyed by a fingerprint of its inputs.

A *compile unit* is one kernel specialization in one configuration for one architecture:
what Triton turns into one cubin. Its *fingerprint* hashes everything that decides that
cubin:

- the JIT function's cache key: its source, the source of every ``@triton.jit`` function it
  calls and the constexpr globals it reads (Triton's ``JITFunction.cache_key``, which also
  holds the line where the function starts: its line info is in the binary);
- the specialization: argument types, divisibility attributes and constexpr values
  (Triton's ``ASTSource.hash``);
- the launch options: warps, stages, CTAs, ``maxnreg``, ... (the backend's parsed options);
- the target architecture and the ``ptxas`` version (the backend's ``hash``);
- the Triton version, and the environment variables Triton itself lets change a binary.

A CUDA C unit (NVRTC) hashes its source, options, architecture and the NVRTC version.

The record lives at ``results/compile/<triton version>/<arch>.json``: one entry per
fingerprint, sorted, one entry a line, so that a diff shows which units came and went.
An entry holds the verdict (``ok``, ``spills``, ``error``), registers, stack and local
bytes (spills), shared memory, the tensor-core instructions of the SASS and their class
(``mma_class``), and what identifies the unit to a reader (kernel, configuration,
specialization). A record from another Triton version is never read: the version is in
its path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

RECORD_DIR = Path("results") / "compile"

# What a spot check compares: a fresh build of a recorded unit must give these again.
COMPARED_FIELDS = ("verdict", "registers", "stack_bytes", "local_bytes", "shared_bytes", "tensor_core_ops")

# Tensor-core instruction classes, strongest first: Blackwell tcgen05, Hopper warpgroup MMA, mma.sync.
MMA_CLASSES = (
    ("tcgen05", ("UTCHMMA", "UTCQMMA", "UTCIMMA", "UTCOMMA")),
    ("wgmma", ("HGMMA", "IGMMA", "QGMMA")),
    ("mma", ("HMMA", "IMMA", "DMMA")),
)


class RecordError(ValueError):
    """A compile record that cannot be read: the message names its path and the position of the error."""


def record_path(triton_version: str, arch: str, root: Path = RECORD_DIR) -> Path:
    return Path(root) / triton_version / f"{arch}.json"


def mma_class(tensor_core_ops: list[str]) -> str:
    """``tcgen05``, ``wgmma``, ``mma`` or ``none``: the strongest tensor-core instruction class in the SASS."""
    for name, mnemonics in MMA_CLASSES:
        if any(op in mnemonics for op in tensor_core_ops):
            return name
    return "none"


def specialization_label(specialization: dict) -> str:
    """``bf16 HEAD_DIM=128 CAUSAL=True div16×12``: the first pointer's element type, the constexprs,
    and how many integer arguments were specialized as multiples of 16 (the record names them)."""
    pointers = [kind for kind in specialization.values() if isinstance(kind, str) and kind.startswith("*")]
    settings = [
        f"div16×{len(value.split(','))}" if name == "div16" else f"{name}={value}"
        for name, value in specialization.items()
        if not (isinstance(value, str) and value.startswith("*"))
    ]
    return " ".join(([pointers[0][1:]] if pointers else []) + settings)


def unit_digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def triton_fingerprint(src, backend, options) -> str:
    """The fingerprint of a Triton compile unit: its ``ASTSource``, the target's backend and the parsed
    options, as ``triton.compiler.compile`` builds them."""
    import triton

    try:
        from triton.runtime.cache import get_cache_invalidating_env_vars

        env = str(sorted(get_cache_invalidating_env_vars().items()))
    except ImportError:  # older Triton: no such variables
        env = ""
    return unit_digest("triton", triton.__version__, src.hash(), backend.hash(), options.hash(), env)


def cuda_c_fingerprint(source: str, options: tuple[str, ...], capability: int, nvrtc_version: str) -> str:
    """The fingerprint of a CUDA C program compiled with NVRTC."""
    return unit_digest("nvrtc", nvrtc_version, source, " ".join(options), str(capability))


def verdict(build: dict) -> str:
    if build["error"]:
        return "error"
    return "spills" if build["spills"] else "ok"


def entry_of(build: dict) -> dict:
    """A build (``KernelBuild.to_dict()``) as a record entry."""
    return {
        "kernel": build["kernel"],
        "config": build["config"],
        "specialization": build["specialization"],
        "verdict": verdict(build),
        "registers": build["registers"],
        "stack_bytes": build["stack_bytes"],
        "local_bytes": build["local_bytes"],
        "shared_bytes": build["shared_bytes"],
        "static_shared_bytes": build["static_shared_bytes"],
        "tensor_core_ops": build["tensor_core_ops"],
        "mma_class": mma_class(build["tensor_core_ops"]),
        "error": build["error"],
    }


def differences(entry: dict, fresh: dict) -> list[str]:
    """What a fresh build of a recorded unit changed, as ``field: recorded -> fresh``."""
    return [
        f"{name}: {entry.get(name)!r} -> {fresh.get(name)!r}"
        for name in COMPARED_FIELDS
        if entry.get(name) != fresh.get(name)
    ]


def load(path: Path) -> dict[str, dict]:
    """The entries of the record at ``path`` (empty when there is none); RecordError when it does not parse."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RecordError(
            f"{path}: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}; "
            f"restore it from git or rebuild it with `menagerie compile --full --update`"
        ) from None
    except OSError as error:
        raise RecordError(f"{path}: cannot be read: {error.strerror}") from None
    if not isinstance(entries, dict) or not all(
        isinstance(value, dict) and "verdict" in value for value in entries.values()
    ):
        raise RecordError(
            f"{path}: expected an object of fingerprint -> entry (with a verdict); "
            f"restore it from git or rebuild it with `menagerie compile --full --update`"
        )
    return entries


def dumps(entries: dict[str, dict]) -> str:
    """Sorted, one entry a line: diffs show units, not reflowed JSON."""
    lines = [
        f"{json.dumps(fingerprint)}: {json.dumps(entries[fingerprint], sort_keys=True)}"
        for fingerprint in sorted(entries)
    ]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write(entries: dict[str, dict], path: Path) -> Path:
    """Write the record atomically."""
    from menagerie.harness.results import write_text_atomically

    return write_text_atomically(dumps(entries), path)
