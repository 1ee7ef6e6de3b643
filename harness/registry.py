"""The benchmark contract and the registry that holds every declared benchmark.

A benchmark (``family.op``) declares, once: its cases per size preset, an input
maker ``(case, dtype, device, seed) -> dict``, the reference implementation, the
optimized variants and optional peers, the modes it supports, a cost model and
tolerances per dtype. The runner does the rest (accuracy, timing, statistics,
roofline, provenance), so a family module holds declarations only.

The cost model is ``cost(case, mode, dtype) -> Cost``. Each implementation is
called as ``fn(**inputs)`` and returns a tensor or a tuple
of tensors. In the ``bwd`` and ``fwd_bwd`` modes the runner differentiates the
floating-point outputs with respect to the inputs named in ``grad_inputs``.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from menagerie.harness import entry_points

if TYPE_CHECKING:  # the contract names torch's types; `menagerie --help` and `list` import no torch for it
    import torch

SIZES = ("tiny", "small", "full")
MODES = ("fwd", "bwd", "fwd_bwd")
ROLES = ("reference", "variant", "peer")
# The dtype names commands and options take, and the torch dtype each stands for (by its name: no torch at import).
DTYPES = {
    "fp32": "float32",
    "float32": "float32",
    "fp16": "float16",
    "float16": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
}


def default_size(device: torch.device) -> str:
    """The size preset when none is given: ``small`` on a GPU, ``tiny`` on the CPU (interpreted Triton)."""
    return "small" if device.type == "cuda" else "tiny"


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a name in ``DTYPES``."""
    import torch

    return getattr(torch, DTYPES[name])


@dataclass(frozen=True)
class Case:
    """One problem shape: a short name (unique within a preset) and its parameters."""

    name: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Cost:
    """Work a perfect implementation cannot avoid, for throughput and roofline.

    ``flops``: useful floating-point operations; ``bytes``: minimal bytes moved
    to and from device memory; ``exp``: transcendental operations (exp, log,
    sigmoid, ...). ``flop_ceiling`` names the rate the FLOPs run at: ``matmul``
    (tensor cores) or ``fp32`` (CUDA cores, for scans and element-wise math).
    ``extra`` carries family-specific counts (e.g. executed-tile FLOPs) that are
    recorded but not used for the roofline.
    """

    flops: float = 0.0
    bytes: float = 0.0
    exp: float = 0.0
    flop_ceiling: str = "matmul"
    extra: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if self.flop_ceiling not in ("matmul", "fp32"):
            raise ValueError(f"Cost.flop_ceiling must be 'matmul' or 'fp32', got {self.flop_ceiling!r}")

    def __add__(self, other: Cost) -> Cost:
        """Work of two steps run one after the other (e.g. forward then backward)."""
        if other.flop_ceiling != self.flop_ceiling:
            raise ValueError("cannot add costs bound by different FLOP ceilings")
        extra = {key: self.extra.get(key, 0.0) + other.extra.get(key, 0.0) for key in {*self.extra, *other.extra}}
        return Cost(self.flops + other.flops, self.bytes + other.bytes, self.exp + other.exp, self.flop_ceiling, extra)


def cost_of_mode(mode: str, fwd: Cost, bwd: Cost) -> Cost:
    """The work of ``mode`` from the forward's and the backward's: ``fwd``, ``bwd``, or both one after the other
    for ``fwd_bwd``."""
    if mode == "fwd":
        return fwd
    if mode == "bwd":
        return bwd
    if mode == "fwd_bwd":
        return fwd + bwd
    raise ValueError(f"cost_of_mode: mode must be one of {MODES}, got {mode!r}")


@dataclass(frozen=True)
class Tolerance:
    """Element-wise pass criterion: ``|out - ref| <= atol + atol_of_max * max|ref| + rtol * |ref|``.

    ``atol_of_max`` scales the absolute part with each output's largest magnitude, for
    results (long sums, gradients) whose error grows with their scale.
    """

    atol: float
    rtol: float
    atol_of_max: float = 0.0


# Returns why an implementation cannot run for (case, device, dtype, mode), or None when it can.
SkipReason = Callable[["Case", "torch.device", "torch.dtype", str], "str | None"]


def needs(what: str, *, module: str | None = None, cuda: bool = False, why: str = "") -> SkipReason:
    """The skip reason of an implementation that needs the package ``what``, imported as ``module``, and/or a CUDA
    device. Without ``module``, ``what`` names the implementation and only the device is checked.

    In this order: ``"<what> is not installed"`` (``module`` is not found), ``"<what> runs on CUDA only (<why>)"``
    (``cuda`` and the device is another; ``why``, when given, says why), ``"<what> is installed but does not import
    (<error>)"`` (e.g. its compiled extensions are missing; imported once per process); else None.
    """
    if module is None and not cuda:
        raise ValueError(f"needs({what!r}): give the module to import, cuda=True, or both")
    cuda_only = f"{what} runs on CUDA only" + (f" ({why})" if why else "")

    def reason(case, device, dtype, mode):
        if module is not None and importlib.util.find_spec(module) is None:
            return f"{what} is not installed"
        if cuda and device.type != "cuda":
            return cuda_only
        return None if module is None else _import_error(what, module)

    return reason


@functools.cache
def _import_error(what: str, module: str) -> str | None:
    try:
        importlib.import_module(module)
    except ImportError as error:
        return f"{what} is installed but does not import ({error})"
    return None


def first_reason(*reasons: SkipReason) -> SkipReason:
    """The skip reason that gives the first of ``reasons`` that applies (None when none does)."""

    def reason(case, device, dtype, mode):
        for rule in reasons:
            if text := rule(case, device, dtype, mode):
                return text
        return None

    return reason


@dataclass(frozen=True)
class Impl:
    """One implementation of a benchmark's operation.

    ``role`` is ``reference``, ``variant`` (ours, optimized) or ``peer`` (another
    project's, run when installed). ``skip_reason`` says why it cannot run in a
    given setting; the runner reports such rows as skipped with that reason.
    ``note`` labels semantic differences (e.g. "without sinks"). ``poison=False``
    checks accuracy without poisoned allocations, for code that cannot run under a
    dispatch mode (anything ``torch.compile``d); the accuracy record says so.
    ``triton=True`` marks our code that launches Triton kernels: ``menagerie compile``
    drives it to build those kernels for GPU architectures. ``cuda_c(dtype)`` returns
    the CUDA C program (name, source, options, functions, threads_per_block) that the
    implementation compiles at run time; ``menagerie compile`` builds it with NVRTC.
    """

    name: str
    fn: Callable[..., Any]
    role: str = "variant"
    skip_reason: SkipReason | None = None
    note: str = ""
    poison: bool = True
    triton: bool = False
    cuda_c: Callable[[torch.dtype], Any] | None = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"Impl {self.name!r}: role must be one of {ROLES}, got {self.role!r}")


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    cases: Mapping[str, Sequence[Case]]
    make_inputs: Callable[[Case, torch.dtype, torch.device, int], dict]
    reference: Impl
    variants: Sequence[Impl]
    cost: Callable[[Case, str, torch.dtype], Cost]
    tolerances: Mapping[torch.dtype, Tolerance]
    peers: Sequence[Impl] = ()
    modes: Sequence[str] = ("fwd",)
    grad_inputs: Sequence[str] = ()
    # (named outputs, inputs) -> what the accuracy check compares, for outputs with several
    # right answers (e.g. a top-k that may order near-ties either way); None compares them as they are.
    accuracy_view: Callable[[dict, dict], dict] | None = None

    def __post_init__(self):
        if "." not in self.name:
            raise ValueError(f"benchmark name must be 'family.op', got {self.name!r}")
        unknown = set(self.cases) - set(SIZES)
        if unknown:
            raise ValueError(f"{self.name}: unknown size presets {sorted(unknown)}; expected {SIZES}")
        bad_modes = set(self.modes) - set(MODES)
        if bad_modes:
            raise ValueError(f"{self.name}: unknown modes {sorted(bad_modes)}; expected {MODES}")
        if any(m != "fwd" for m in self.modes) and not self.grad_inputs:
            raise ValueError(f"{self.name}: modes {list(self.modes)} need grad_inputs")
        if self.reference.role != "reference":
            raise ValueError(f"{self.name}: the reference Impl must have role='reference'")
        names = [impl.name for impl in self.impls]
        if len(names) != len(set(names)):
            raise ValueError(f"{self.name}: implementation names must be unique, got {names}")

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def dtypes(self) -> tuple[torch.dtype, ...]:
        return tuple(self.tolerances)

    @property
    def impls(self) -> tuple[Impl, ...]:
        return (self.reference, *self.variants, *self.peers)


@dataclass(frozen=True)
class PublishedFigure:
    """A published figure the suite's results are set beside: what was measured, on which device, and where it was
    published. ``device`` is a GPU name as it appears in device names ("H100"); a site shows it on those devices'
    pages."""

    subject: str  # the benchmark or task it stands beside
    device: str
    what: str
    value: float
    unit: str
    source: str


_REGISTRY: dict[str, Benchmark] = {}
_PUBLISHED: dict[tuple[str, str, str], PublishedFigure] = {}


def dtype_name(dtype: torch.dtype) -> str:
    """A torch dtype's name as records and commands write it: ``float32``, ``bfloat16``."""
    return str(dtype).removeprefix("torch.")


def register(benchmark: Benchmark) -> Benchmark:
    if benchmark.name in _REGISTRY:
        raise ValueError(f"benchmark {benchmark.name!r} is registered twice")
    _REGISTRY[benchmark.name] = benchmark
    return benchmark


def publish(figure: PublishedFigure) -> PublishedFigure:
    """Adds a published figure (a family does this when it is imported, beside ``register``)."""
    _PUBLISHED[(figure.subject, figure.device, figure.what)] = figure
    return figure


def published() -> list[PublishedFigure]:
    """Every family's published figures, by subject and device."""
    load_all()
    return [_PUBLISHED[key] for key in sorted(_PUBLISHED)]


def load_all() -> dict[str, Benchmark]:
    """Import every benchmark family, the suite's and other packages', through the entry points of the
    ``menagerie.benchmarks`` group (``harness/entry_points.py``); each module registers its benchmarks."""
    for entry in entry_points.declared(entry_points.BENCHMARKS):
        try:
            entry.load()
        except ImportError as error:
            raise ImportError(
                f"benchmark family {entry.name!r} ({entry.value}) does not import: {error}", name=error.name
            ) from error
    return dict(_REGISTRY)


def select(patterns: Sequence[str] = ()) -> list[Benchmark]:
    """Benchmarks whose name or family matches any of the glob ``patterns`` (all when empty).

    Raises ValueError naming a pattern that matches nothing.
    """
    registry = load_all()
    if not patterns:
        return [registry[name] for name in sorted(registry)]
    chosen: dict[str, Benchmark] = {}
    for pattern in patterns:
        hits = [
            name
            for name, bench in registry.items()
            if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(bench.family, pattern)
        ]
        if not hits:
            close = difflib.get_close_matches(
                pattern, [*registry, *{bench.family for bench in registry.values()}], n=3, cutoff=0.5
            )
            raise ValueError(
                f"no benchmark matches {pattern!r}"
                + (f"; did you mean {' or '.join(map(repr, close))}?" if close else "")
                + f" (known: {', '.join(sorted(registry))})"
            )
        chosen.update({name: registry[name] for name in hits})
    return [chosen[name] for name in sorted(chosen)]
