"""A Triton driver that compiles for a chosen GPU architecture and launches nothing.

Set active (``compile_only(arch)``), it makes Triton's ordinary call path (``kernel[grid](...)``,
the autotuner, the shared-memory check) run on a machine without a GPU: tensors are CPU
tensors, the target is ``arch``, device properties are the arch's, and the launcher
records the launch instead of running it. The autotuner's benchmarker compiles and
"launches" every configuration it is given and prefers spill-free ones, so each
configuration a GPU's autotuner could pick is compiled exactly as it would be there.

Every compiled kernel becomes a ``KernelBuild``: its constexprs and signature, warps and
stages, dynamic shared memory, and, read from its cubin, registers, spills and the
tensor-core instructions of its SASS. A configuration that fails to compile inside the
autotuner (which would skip it silently) is recorded with its error. Kernel outputs are
never written, so code after a launch sees uninitialized memory.

Given the entries of a compile record (``harness/compile_record.py``), the driver compiles
only the units whose fingerprint the record lacks: a known unit is *replayed*, its build
made from its entry, and behaves as its compiled self would (a launch is recorded, a
configuration over the arch's limits raises ``OutOfResources``). ``Recorder.spot_check``
then compiles chosen replayed units afresh and reports where they differ from the record.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import triton
import triton.compiler
from triton.backends.compiler import GPUTarget
from triton.backends.driver import DriverBase

from menagerie.harness import compile_record, cubin
from menagerie.harness.gpu_archs import Arch


@dataclass
class KernelBuild:
    """One compiled kernel: a (kernel, arch, configuration, specialization) that a launch needed."""

    kernel: str
    arch: str
    config: dict  # block sizes (constexprs named BLOCK*/tuned by the autotuner), warps, stages
    specialization: dict  # the other constexprs and the argument types
    autotuned: bool
    shared_bytes: int = 0  # dynamic shared memory (Triton's) plus static
    resources: cubin.Resources | None = None
    tensor_core_ops: list[str] = field(default_factory=list)
    max_threads: int | None = None
    occupancy_blocks: int | None = None
    occupancy: float | None = None
    error: str = ""
    launches: int = 0
    fingerprint: str = ""  # of the compile unit (compile_record); "" for a configuration that failed to compile
    origin: str = "compiled"  # "compiled" here, or "record" (replayed from the compile record's entry)

    @property
    def usable(self) -> bool:
        """Compiled, fits the arch's shared memory and its registers."""
        return not self.error

    @property
    def spill_free(self) -> bool:
        return self.usable and self.resources is not None and not self.resources.spills

    def to_dict(self) -> dict:
        res = self.resources
        return {
            "kernel": self.kernel,
            "arch": self.arch,
            "config": self.config,
            "specialization": self.specialization,
            "autotuned": self.autotuned,
            "shared_bytes": self.shared_bytes,
            "registers": res and res.registers,
            "stack_bytes": res and res.stack_bytes,
            "local_bytes": res and res.local_bytes,
            "static_shared_bytes": res and res.static_shared_bytes,
            "spills": res.spills if res else None,
            "tensor_core_ops": self.tensor_core_ops,
            "max_threads": self.max_threads,
            "occupancy_blocks": self.occupancy_blocks,
            "occupancy": self.occupancy,
            "error": self.error,
            "launches": self.launches,
            "fingerprint": self.fingerprint,
            "origin": self.origin,
        }


def _value(value):
    return value if isinstance(value, (bool, int, float, str)) or value is None else str(value)


def _split_constants(src, tuned_names: set[str]) -> tuple[dict, dict]:
    """A compiled source's constexprs, split into configuration and specialization."""
    names = src.fn.arg_names
    config, special = {}, {}
    for key, value in src.constants.items():
        name = names[key[0]] if isinstance(key, tuple) else (names[key] if isinstance(key, int) else key)
        (config if name in tuned_names or name.startswith("BLOCK") else special)[name] = _value(value)
    kinds = {}
    for key, kind in src.signature.items():
        name = names[key] if isinstance(key, int) else key
        kinds[name] = str(kind)
        if kind != "constexpr" and str(kind).startswith("*"):
            special[name] = str(kind)
    # Integer arguments specialized as multiples of 16: each combination is its own build.
    aligned = [
        names[path[0]]
        for path, attributes in src.attrs.items()
        if ["tt.divisibility", 16] in [list(a) for a in attributes] and not kinds[names[path[0]]].startswith("*")
    ]
    if aligned:
        special["div16"] = ",".join(aligned)
    return config, special


class _Launcher:
    """One per compiled (or replayed) kernel; records its launches."""

    def __init__(self, recorder: Recorder, build: KernelBuild):
        self.recorder, self.build = recorder, build

    def __call__(self, *args, **kwargs):
        self.build.launches += 1
        self.recorder.last_launched = self.build
        self.recorder.launched.append(self.build)


class _ReplayedKernel:
    """What ``triton.compiler.compile`` returns for a unit the record knows: enough of a ``CompiledKernel``
    for the JIT's launch path, with the build made from the record's entry."""

    function = None
    packed_metadata = None

    def __init__(self, recorder: Recorder, src, options, fingerprint: str, entry: dict):
        self.src, self.name = src, entry["kernel"]
        self._recorder, self._options, self._fingerprint, self._entry = recorder, options, fingerprint, entry
        self._launcher: _Launcher | None = None
        self._error: Exception | None = None

    def launch_metadata(self, grid, stream, *args):
        return None

    @property
    def run(self):
        if self._error is not None:
            raise self._error
        if self._launcher is None:
            build = self._recorder.replay(self.src, self._options, self._fingerprint, self._entry)
            if build.error:  # over the arch's limits, as Triton's loader would say
                from triton.runtime.errors import OutOfResources

                arch = self._recorder.arch
                self._error = (
                    OutOfResources(build.shared_bytes, arch.max_shared_per_block, "shared memory")
                    if build.shared_bytes > arch.max_shared_per_block
                    else OutOfResources(build.config["num_warps"] * 32, build.max_threads, "threads")
                )
                raise self._error
            self._launcher = _Launcher(self._recorder, build)
        return self._launcher


class _Utils:
    def __init__(self, arch: Arch, recorder: Recorder):
        self.arch, self.recorder = arch, recorder

    def get_device_properties(self, device):
        arch = self.arch
        return {
            "max_shared_mem": arch.max_shared_per_block,
            "max_num_regs": arch.registers_per_sm,
            "multiprocessor_count": arch.multiprocessors,
            "warpSize": 32,
            "sm_clock_rate": 0,
            "mem_clock_rate": 0,
            "mem_bus_width": 0,
        }

    def load_binary(self, name, kernel, shared, device):
        registers = self.recorder.attach_binary(name, kernel)
        return object(), object(), registers, 0, self.arch.max_threads_for(registers)

    def unload_module(self, module):
        pass


class Recorder:
    """Everything the compile-only driver saw: the builds, in the order they were compiled."""

    def __init__(self, arch: Arch, known: dict[str, dict] | None = None):
        self.arch = arch
        self.known = known or {}  # compile record entries by fingerprint: these units are replayed
        self.builds: list[KernelBuild] = []
        self.launched: list[KernelBuild] = []  # one entry per launch
        self.last_launched: KernelBuild | None = None
        self.rebuild: dict[str, Callable[[], KernelBuild]] = {}  # replayed fingerprint -> a fresh build of it
        self._pending: KernelBuild | None = None
        self._tuning: set[str] = set()  # kwargs of the configuration the autotuner is trying

    # -- Triton units -------------------------------------------------------------------------

    def compile(self, src, target=None, options=None, **kwargs):
        """Stands in for ``triton.compiler.compile``: replays a unit the record knows, else compiles it."""
        from triton.compiler.compiler import make_backend

        target = target or GPUTarget("cuda", self.arch.capability, 32)
        backend = make_backend(target)
        parsed = backend.parse_options(dict(options or {}, **src.parse_options()))
        fingerprint = compile_record.triton_fingerprint(src, backend, parsed)
        src.menagerie_fingerprint = fingerprint  # read back when its launcher is made
        entry = self.known.get(fingerprint)
        if entry is None:
            return _triton_compile(src, target=target, options=options, **kwargs)
        self.rebuild[fingerprint] = lambda: self._fresh_triton_build(src, target, options, fingerprint)
        return _ReplayedKernel(self, src, parsed, fingerprint, entry)

    def _fresh_triton_build(self, src, target, options, fingerprint: str) -> KernelBuild:
        kernel = _triton_compile(src, target=target, options=options)
        build = self._describe(src, kernel.metadata)
        self._measure(build, kernel.asm["cubin"])
        build.fingerprint = fingerprint
        return build

    def _describe(self, src, metadata) -> KernelBuild:
        """A build's identity and shared memory, from its source and compile metadata."""
        config, special = _split_constants(src, self._tuning)
        config.update(num_warps=metadata.num_warps, num_stages=metadata.num_stages)
        build = KernelBuild(
            kernel=metadata.name,
            arch=self.arch.name,
            config=config,
            specialization=special,
            autotuned=bool(self._tuning),
            shared_bytes=int(metadata.shared),
            fingerprint=getattr(src, "menagerie_fingerprint", ""),
        )
        if build.shared_bytes > self.arch.max_shared_per_block:
            build.error = self._shared_error(build.shared_bytes)
        return build

    def _shared_error(self, shared_bytes: int) -> str:
        return (
            f"shared memory {shared_bytes} B over the {self.arch.name} limit of "
            f"{self.arch.max_shared_per_block} B per block"
        )

    def new_build(self, src, metadata) -> KernelBuild:
        """A kernel Triton compiled here: described now, measured when its binary is loaded."""
        build = self._describe(src, metadata)
        self.builds.append(build)
        self._pending = build
        return build

    def replay(self, src, options, fingerprint: str, entry: dict) -> KernelBuild:
        """A unit the record knows, as its compiled self: identity from the source, resources from the entry."""
        config, special = _split_constants(src, self._tuning)
        config.update(num_warps=options.num_warps, num_stages=options.num_stages)
        build = KernelBuild(
            kernel=entry["kernel"],
            arch=self.arch.name,
            config=config,
            specialization=special,
            autotuned=bool(self._tuning),
            fingerprint=fingerprint,
            origin="record",
        )
        self._restore(build, entry, config["num_warps"])
        self.builds.append(build)
        return build

    def _restore(self, build: KernelBuild, entry: dict, warps: int) -> None:
        build.shared_bytes = entry["shared_bytes"]
        build.tensor_core_ops = list(entry["tensor_core_ops"])
        if entry["registers"] is not None:
            build.resources = cubin.Resources(
                registers=entry["registers"],
                stack_bytes=entry["stack_bytes"],
                local_bytes=entry["local_bytes"],
                static_shared_bytes=entry["static_shared_bytes"],
            )
            self._occupancy(build, warps)
        build.error = entry["error"]

    def attach_binary(self, name: str, binary: bytes) -> int:
        build, self._pending = self._pending, None
        if build is None or build.kernel != name:
            raise RuntimeError(f"compile-only driver: binary of {name!r} arrived without its launcher")
        self._measure(build, binary)
        return build.resources.registers

    def _measure(self, build: KernelBuild, binary: bytes, warps: int | None = None) -> None:
        """Registers, spills, static shared memory and tensor-core instructions, read from the cubin."""
        build.resources = cubin.resources(binary, build.kernel)
        build.shared_bytes += build.resources.static_shared_bytes
        build.tensor_core_ops = cubin.tensor_core_ops(binary, self.arch.tensor_core_sass)
        warps = warps or build.config["num_warps"]
        self._occupancy(build, warps)
        if warps * 32 > build.max_threads:
            build.error = (
                f"{warps * 32} threads per block, but {build.resources.registers} registers allow {build.max_threads}"
            )

    def _occupancy(self, build: KernelBuild, warps: int) -> None:
        build.max_threads = self.arch.max_threads_for(build.resources.registers)
        build.occupancy_blocks, build.occupancy = self.arch.occupancy(
            build.resources.registers, build.shared_bytes, warps
        )

    # -- CUDA C units (NVRTC) -----------------------------------------------------------------

    def add_cuda_c(self, program) -> list[KernelBuild]:
        """Build a CUDA C program (``Impl.cuda_c``) with NVRTC for the arch, one KernelBuild per function;
        a function whose unit the record knows is replayed."""
        from menagerie.harness import nvrtc

        warps = program.threads_per_block // 32
        program_fingerprint = compile_record.cuda_c_fingerprint(
            program.source, program.options, self.arch.capability, nvrtc.version()
        )
        builds = [self._cuda_c_build(program, function, program_fingerprint) for function in program.functions]
        missing = [build for build in builds if build.fingerprint not in self.known]
        if missing:
            self._compile_cuda_c(program, missing, warps)
        for build in builds:
            if build.fingerprint in self.known:
                build.origin = "record"
                self._restore(build, self.known[build.fingerprint], warps)
                self.rebuild[build.fingerprint] = lambda function=build.kernel, fingerprint=build.fingerprint: (
                    self._fresh_cuda_c_build(program, function, fingerprint, warps)
                )
        self.builds.extend(builds)
        return builds

    def _cuda_c_build(self, program, function: str, program_fingerprint: str) -> KernelBuild:
        return KernelBuild(
            kernel=function,
            arch=self.arch.name,
            config={"threads": program.threads_per_block},
            specialization={"program": program.name},
            autotuned=False,
            fingerprint=compile_record.unit_digest(program_fingerprint, function),
        )

    def _compile_cuda_c(self, program, builds: list[KernelBuild], warps: int) -> None:
        from menagerie.harness import nvrtc

        try:
            binary = nvrtc.compile_cubin(program.source, program.name, program.options, self.arch.capability)
        except nvrtc.NvrtcError as error:
            for build in builds:
                build.error = str(error)[:400]
        else:
            for build in builds:
                self._measure(build, binary, warps)

    def _fresh_cuda_c_build(self, program, function: str, fingerprint: str, warps: int) -> KernelBuild:
        build = self._cuda_c_build(program, function, "")
        build.fingerprint = fingerprint
        self._compile_cuda_c(program, [build], warps)
        return build

    # -- spot checks ------------------------------------------------------------------------------

    def spot_check(self, fingerprints: list[str]) -> list[dict]:
        """Compile the chosen replayed units afresh; per unit, what differs from its record entry."""
        checks = []
        for fingerprint in fingerprints:
            entry = self.known[fingerprint]
            try:
                fresh = compile_record.entry_of(self.rebuild[fingerprint]().to_dict())
                changed = compile_record.differences(entry, fresh)
            except Exception as error:  # a recorded unit that no longer compiles differs too
                changed = [f"compile: {type(error).__name__}: {error}"[:400]]
            checks.append(
                {
                    "fingerprint": fingerprint,
                    "kernel": entry["kernel"],
                    "arch": self.arch.name,
                    "config": entry["config"],
                    "differences": changed,
                }
            )
        return checks

    def failed_config(self, kernel: str, config: triton.Config, error: Exception) -> None:
        """A configuration the autotuner tried that did not compile."""
        settings = {
            **{k: _value(v) for k, v in config.kwargs.items()},
            "num_warps": config.num_warps,
            "num_stages": config.num_stages,
        }
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        self.builds.append(
            KernelBuild(
                kernel=kernel,
                arch=self.arch.name,
                config=settings,
                specialization={"failed": "to compile"},
                autotuned=True,
                error=f"{type(error).__name__}: {lines[-1] if lines else ''}"[:400],
            )
        )

    def benchmark(self, kernel_call, quantiles=None, **_ignored):
        """The autotuner's benchmarker: compile and record this configuration; spill-free ones win."""
        scope = inspect.getclosurevars(kernel_call).nonlocals
        config, tuner = scope.get("config"), scope.get("self")
        self._tuning = set(config.kwargs) if config is not None else set()
        self.last_launched = None
        built_before = len(self.builds)
        try:
            kernel_call()
        except Exception as error:
            # A build over the arch's limits is already recorded with its reason.
            if config is not None and len(self.builds) == built_before:
                name = getattr(getattr(tuner, "base_fn", None), "__name__", "?")
                self.failed_config(name, config, error)
            raise
        finally:
            self._tuning = set()
        build = self.last_launched
        timing = 1.0 if build is not None and build.spill_free else 2.0 if build is not None and build.usable else 3.0
        return [timing] * len(quantiles) if quantiles else timing


class CompileOnlyDriver(DriverBase):
    """Reports ``arch`` as the current target; see the module docstring."""

    compile_only = True

    def __init__(self, arch: Arch, known: dict[str, dict] | None = None):
        super().__init__()
        self.arch = arch
        self.recorder = Recorder(arch, known)
        self.utils = _Utils(arch, self.recorder)
        self.launcher_cls = lambda src, metadata: _Launcher(self.recorder, self.recorder.new_build(src, metadata))

    @classmethod
    def is_active(cls):
        return False

    def map_python_to_cpp_type(self, ty: str) -> str:
        from triton.backends.nvidia.driver import ty_to_cpp

        return ty_to_cpp(ty)

    def get_current_target(self):
        return GPUTarget("cuda", self.arch.capability, 32)

    def get_active_torch_device(self):
        return torch.device("cpu")

    def get_device_interface(self):
        return torch.cpu

    def get_current_device(self):
        return 0

    def set_current_device(self, device):
        pass

    def get_current_stream(self, device=None):
        return 0

    def get_device_capability(self, device=0):
        return divmod(self.arch.capability, 10)

    def get_benchmarker(self):
        return self.recorder.benchmark

    def get_empty_cache_for_benchmark(self):
        return torch.empty(0)

    def clear_cache(self, cache):
        pass


_triton_compile = triton.compiler.compile  # Triton's own; ``compile_only`` puts ``Recorder.compile`` in its place


@contextlib.contextmanager
def compile_only(arch: Arch, known: dict[str, dict] | None = None):
    """Make Triton compile for ``arch`` and launch nothing; yields the Recorder.

    ``known``: compile record entries by fingerprint; those units are replayed, not compiled.
    Needs ``TRITON_INTERPRET`` off when the kernels were imported. One arch per process:
    Triton binds each kernel's target on its first call.
    """
    from triton.runtime import driver

    active = CompileOnlyDriver(arch, known)
    driver.set_active(active)
    # The JIT looks ``compile`` up in ``triton.compiler`` when it first builds a kernel's per-device cache.
    triton.compiler.compile = active.recorder.compile
    try:
        yield active.recorder
    finally:
        triton.compiler.compile = _triton_compile
        # Back to the machine's own driver, created on first use (reset_active() would create it
        # now, and there may be none: no GPU).
        driver._active = driver._default
