"""Timers that return every per-call sample, in seconds.

- ``cpu``: ``time.perf_counter`` around each call.
- ``events``: CUDA events around each call, with the L2 cache flushed before each
  call (a 256 MiB write, larger than any current L2), so every call starts cold
  as it would inside a real model rather than re-reading its own inputs from L2.
- ``graph``: the call captured once in a CUDA graph and replayed, flush between
  replays, which removes Python and launch overhead from the measurement.

Warm-up and measurement are time budgets: the warm-up runs until its budget is
spent (compiling and autotuning happen there), the per-call time it observed
sets how many repetitions fit the measurement budget, clamped to
``[min_reps, max_reps]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

TIMERS = ("events", "graph", "cpu")
L2_FLUSH_BYTES = 256 * 1024 * 1024


class TimerError(RuntimeError):
    """The timer could not measure this callable (e.g. it cannot be graph-captured)."""


@dataclass(frozen=True)
class Budget:
    warmup_s: float = 0.2
    measure_s: float = 1.0
    min_reps: int = 5
    max_reps: int = 500

    def __post_init__(self):
        if self.warmup_s < 0 or self.measure_s <= 0:
            raise ValueError(f"budget times must be positive, got {self}")
        if not 1 <= self.min_reps <= self.max_reps:
            raise ValueError(f"need 1 <= min_reps <= max_reps, got {self}")

    def repetitions(self, seconds_per_call: float) -> int:
        fitting = int(self.measure_s / max(seconds_per_call, 1e-9))
        return max(self.min_reps, min(self.max_reps, fitting))


def _warm_up(fn: Callable[[], object], budget: Budget, sync: Callable[[], None]) -> float:
    """Runs ``fn`` until the warm-up budget is spent (at least twice); returns seconds per call."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        sync()
        calls += 1
        elapsed = time.perf_counter() - start
        if calls >= 2 and elapsed >= budget.warmup_s:
            return elapsed / calls


def time_cpu(fn: Callable[[], object], budget: Budget) -> list[float]:
    per_call = _warm_up(fn, budget, lambda: None)
    samples = []
    for _ in range(budget.repetitions(per_call)):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


class L2Flush:
    """Overwrites a 256 MiB device buffer, evicting whatever the L2 cache holds."""

    def __init__(self, device: torch.device):
        self.buffer = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device=device)

    def __call__(self) -> None:
        self.buffer.zero_()


def time_cuda_events(fn: Callable[[], object], budget: Budget, device: torch.device) -> list[float]:
    flush = L2Flush(device)
    sync = lambda: torch.cuda.synchronize(device)  # noqa: E731
    per_call = _warm_up(lambda: (flush(), fn()), budget, sync)
    reps = budget.repetitions(per_call)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for start, end in zip(starts, ends):
        flush()
        start.record()
        fn()
        end.record()
    sync()
    return [start.elapsed_time(end) / 1e3 for start, end in zip(starts, ends)]


def time_cuda_graph(fn: Callable[[], object], budget: Budget, device: torch.device) -> list[float]:
    flush = L2Flush(device)
    sync = lambda: torch.cuda.synchronize(device)  # noqa: E731
    # Warm up eagerly on a side stream first: compiling, autotuning and the caching
    # allocator's first allocations must not happen inside the capture.
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        _warm_up(fn, budget, sync)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            fn()
    except Exception as error:  # capture fails for host syncs, CPU tensors, ...
        raise TimerError(f"cannot capture in a CUDA graph: {error}") from error
    per_call = _warm_up(lambda: (flush(), graph.replay()), budget, sync)
    reps = budget.repetitions(per_call)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for start, end in zip(starts, ends):
        flush()
        start.record()
        graph.replay()
        end.record()
    sync()
    return [start.elapsed_time(end) / 1e3 for start, end in zip(starts, ends)]


def measure(fn: Callable[[], object], budget: Budget, device: torch.device, timer: str) -> list[float]:
    """Per-call samples in seconds with the timer that suits ``device``."""
    if device.type == "cpu":
        if timer != "cpu":
            raise ValueError(f"timer {timer!r} needs a CUDA device; on the CPU use 'cpu'")
        return time_cpu(fn, budget)
    if timer == "events":
        return time_cuda_events(fn, budget, device)
    if timer == "graph":
        return time_cuda_graph(fn, budget, device)
    raise ValueError(f"timer must be one of {TIMERS} (cpu only on the CPU), got {timer!r}")
