"""Profiles benchmark rows under ``torch.profiler``, for TensorBoard and the terminal.

Each implementation of each planned (benchmark, case, dtype, mode) is bound to the
first seed's inputs exactly as the runner times it (``runner.Prepared``: in ``bwd``
the forward runs outside), called once unprofiled (compilation, autotuning), then
``steps`` times inside a profiler session of its own: CPU activity always, CUDA
activity on a GPU, input shapes and memory recorded, Python stacks only when Triton
is compiled (under the interpreter a kernel runs as Python, and recording stacks
would slow it by orders of magnitude). Each call runs inside a ``record_function``
range named after the row, and inside an NVTX range of the same name on a GPU (for
Nsight Systems).

Sessions write through ``tensorboard_trace_handler`` into ``<out>/<run id>/``,
one worker per row, so ``tensorboard --logdir <out>`` with the torch-tb-profiler
plugin lists the run id as a run and the rows as its workers.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, record_function, tensorboard_trace_handler

from menagerie.harness import runner
from menagerie.harness.device import synchronize
from menagerie.harness.registry import Benchmark, Impl

DEFAULT_PROFILES_DIR = Path("results") / "profiles"


@dataclass(frozen=True)
class OpTime:
    """One operator's totals over the profiled calls of a row (seconds, bytes)."""

    name: str
    calls: int
    self_cpu_s: float
    cpu_total_s: float
    self_device_s: float  # 0 without CUDA activity
    self_cpu_memory_bytes: int


@dataclass(frozen=True)
class ProfiledRow:
    """One implementation of one task: ``profiled``, ``skipped`` or ``error`` (with ``reason``)."""

    label: str
    impl: str
    status: str
    reason: str = ""
    trace: Path | None = None
    call_s: float | None = None  # mean wall time of one call inside its range, CPU clock
    ops: tuple[OpTime, ...] = ()  # most expensive first: self device time on a GPU, else self CPU time


def row_label(task: runner.Task, impl: Impl) -> str:
    """``benchmark-case-dtype-mode-impl``: the range name and the TensorBoard worker name."""
    parts = (task.benchmark.name, task.case.name, runner.dtype_name(task.dtype), task.mode, impl.name)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts))


def new_run_dir(out: Path, benchmarks: list[Benchmark]) -> Path:
    """``<out>/<UTC timestamp>_<first benchmark>[+N]``, made fresh (a suffix avoids collisions)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    label = benchmarks[0].name + (f"+{len(benchmarks) - 1}" if len(benchmarks) > 1 else "")
    for attempt in range(1, 1000):
        path = Path(out) / (f"{stamp}_{label}" + (f"-{attempt}" if attempt > 1 else ""))
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder under {out} for {stamp}_{label}")


def _stacks_are_cheap() -> bool:
    return os.environ.get("TRITON_INTERPRET") != "1"


def _top_ops(profiler: torch.profiler.profile, own_range: str, top: int, on_cuda: bool) -> tuple[OpTime, ...]:
    ops = [
        OpTime(
            name=event.key,
            calls=event.count,
            self_cpu_s=event.self_cpu_time_total * 1e-6,
            cpu_total_s=event.cpu_time_total * 1e-6,
            self_device_s=event.self_device_time_total * 1e-6,
            self_cpu_memory_bytes=int(event.self_cpu_memory_usage),
        )
        for event in profiler.key_averages()
        if event.key != own_range
    ]
    ops.sort(key=lambda op: op.self_device_s if on_cuda else op.self_cpu_s, reverse=True)
    return tuple(ops[:top])


def _range_call_s(profiler: torch.profiler.profile, own_range: str) -> float | None:
    for event in profiler.key_averages():
        if event.key == own_range and event.count:
            return event.cpu_time_total * 1e-6 / event.count
    return None


def profile_row(
    task: runner.Task, impl: Impl, device: torch.device, run_dir: Path, steps: int, top: int
) -> ProfiledRow:
    """Warms ``impl`` up once, then profiles ``steps`` calls into ``run_dir``."""
    label = row_label(task, impl)
    reason = runner.skip_reason(impl, task, device)
    if reason:
        return ProfiledRow(label, impl.name, "skipped", reason)
    on_cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    nvtx = torch.cuda.nvtx.range if on_cuda else lambda name: contextlib.nullcontext()
    try:
        inputs = task.benchmark.make_inputs(task.case, task.dtype, device, 0)
        prepared = runner.Prepared(task.benchmark, impl, inputs, task.mode, seed=0)
        prepared.step()
        synchronize(device)
        with torch.profiler.profile(
            activities=activities,
            record_shapes=True,
            profile_memory=True,
            with_stack=_stacks_are_cheap(),
            on_trace_ready=tensorboard_trace_handler(str(run_dir), worker_name=label),
        ) as prof:
            for _ in range(steps):
                with nvtx(label), record_function(label):
                    prepared.step()
                    synchronize(device)
    except Exception as error:  # a crashing implementation is a finding, not a harness crash
        return ProfiledRow(label, impl.name, "error", f"{type(error).__name__}: {error}")
    traces = sorted(run_dir.glob(f"{label}.*.pt.trace.json"))
    return ProfiledRow(
        label,
        impl.name,
        "profiled",
        trace=traces[-1] if traces else None,
        call_s=_range_call_s(prof, label),
        ops=_top_ops(prof, label, top, on_cuda),
    )


def profile(
    tasks: list[runner.Task],
    device: torch.device,
    run_dir: Path,
    steps: int = 3,
    top: int = 10,
    on_row: Callable[[ProfiledRow], None] | None = None,
) -> list[ProfiledRow]:
    """Profiles every implementation of every task (from ``runner.plan``) into ``run_dir``."""
    if steps < 1 or top < 1:
        raise ValueError(f"steps and top must be positive, got steps={steps}, top={top}")
    rows = []
    for task in tasks:
        for impl in task.impls:
            row = profile_row(task, impl, device, run_dir, steps, top)
            rows.append(row)
            if on_row:
                on_row(row)
    return rows
