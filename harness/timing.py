"""Timers that return every sample, in seconds per call, taken in blocks spread over a budget.

- ``cpu``: ``time.perf_counter`` around each call.
- ``events``: CUDA events around each call, with the L2 cache flushed before each
  sample (a 256 MiB write, larger than any current L2), so every call starts cold
  as it would inside a real model rather than re-reading its own inputs from L2.
- ``graph``: the call captured once in a CUDA graph and replayed, flush between
  replays, which removes Python and launch overhead from the measurement.

Short calls. On a GPU, a call shorter than ``BATCH_BELOW_S`` (10 us) is timed in
batches: one event pair (or one graph replay) spans ``calls_per_sample`` calls,
enough for ``BATCH_SPAN_S`` (100 us), and the sample is the batch's time divided by
its calls, as ``triton.testing.do_bench_cudagraph`` does. Event resolution (~0.5 us)
and replay overhead then do not quantize the samples. The flush precedes each
batch, so after the first call a batch's calls find their inputs in L2, as they
would when a model's previous kernel has just written them.

Warm-up and measurement are time budgets. Each timer warms up until its warm-up
budget is spent (compiling and autotuning happen there); the time per sample it
observed sets how many samples fit the measurement budget, clamped to
``[min_reps, max_reps]``. ``interleave`` then takes those samples in
``Budget.blocks`` blocks: the timers (the implementations of one benchmark case)
take turns block by block, and each block owns a slot of ``measure_s / blocks``
seconds that untimed calls fill once its samples are taken. Samples so cover the
whole budget, and drift over it (clocks, temperature, other tenants) reaches every
implementation alike instead of whichever happened to be timed first.

Stopping on noise (``Budget.max_noise`` > 0), as nvbench's ``--max-noise`` does: the
timers still take turns in blocks of the same size, but each leaves the rotation once
it has ``min_reps`` samples and its *noise*, the half-width of the bootstrap 95% CI of
its median relative to the median (``relative_noise``), is at most ``max_noise``. A
timer that reaches ``max_time_s`` of sampling (its blocks and their slots) or
``max_reps`` samples first stops there (once it has ``min_reps``), with the noise it
has; the runner records it as ``noisy``. ``max_noise`` 0 is the fixed budget above.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from menagerie.harness.stats import bootstrap_median_ci
from menagerie.harness.throttle import DEFAULT_MIN_CLOCK, BlockWatch

TIMERS = ("events", "graph", "cpu")
L2_FLUSH_BYTES = 256 * 1024 * 1024
BATCH_BELOW_S = 10e-6
BATCH_SPAN_S = 100e-6
PROBE_CALLS = 10


class TimerError(RuntimeError):
    """The timer could not measure this callable (e.g. it cannot be graph-captured)."""


@dataclass(frozen=True)
class Budget:
    warmup_s: float = 0.2
    measure_s: float = 1.0
    min_reps: int = 5
    max_reps: int = 500
    blocks: int = 10
    max_noise: float = 0.0  # stop each timer once its noise is at most this (0: sample for measure_s)
    max_time_s: float | None = None  # with max_noise, the most sampling time per timer (None: 3 x measure_s)
    min_clock: float = DEFAULT_MIN_CLOCK  # on a GPU, a block below this share of the warm-up clock is throttled

    def __post_init__(self):
        if self.warmup_s < 0 or self.measure_s <= 0:
            raise ValueError(f"budget times must be positive, got {self}")
        if self.max_noise < 0 or (self.max_time_s is not None and self.max_time_s <= 0):
            raise ValueError(f"max_noise must be >= 0 and max_time_s positive, got {self}")
        if not 0 <= self.min_clock <= 1:
            raise ValueError(f"min_clock must be a share of the warm-up clock in [0, 1], got {self}")
        if not 1 <= self.min_reps <= self.max_reps:
            raise ValueError(f"need 1 <= min_reps <= max_reps, got {self}")
        if self.blocks < 1:
            raise ValueError(f"need at least one block, got {self}")

    def repetitions(self, seconds_per_sample: float) -> int:
        fitting = int(self.measure_s / max(seconds_per_sample, 1e-9))
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


def calls_per_sample(seconds_per_call: float) -> int:
    """Calls batched into one GPU sample: 1 from ``BATCH_BELOW_S`` up, else enough for ``BATCH_SPAN_S``."""
    if seconds_per_call >= BATCH_BELOW_S:
        return 1
    return max(1, math.ceil(BATCH_SPAN_S / max(seconds_per_call, 1e-9)))


class Timer:
    """Times one callable: ``warm_up()`` once, then ``block(n)`` for n samples, as often as wanted."""

    calls_per_sample = 1

    def __init__(self, fn: Callable[[], object], budget: Budget):
        self.fn, self.budget = fn, budget

    def warm_up(self) -> float:
        """Runs the warm-up; returns the wall time one sample will take."""
        raise NotImplementedError

    def block(self, samples: int) -> list[float]:
        raise NotImplementedError

    def untimed_call(self) -> None:
        """One call as the timed ones make it, with nothing recorded (fills a block's slot)."""
        self.fn()


class CpuTimer(Timer):
    def warm_up(self) -> float:
        return _warm_up(self.fn, self.budget, lambda: None)

    def block(self, samples: int) -> list[float]:
        taken = []
        for _ in range(samples):
            start = time.perf_counter()
            self.fn()
            taken.append(time.perf_counter() - start)
        return taken


class L2Flush:
    """Overwrites a 256 MiB device buffer, evicting whatever the L2 cache holds."""

    def __init__(self, device: torch.device):
        self.buffer = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device=device)

    def __call__(self) -> None:
        self.buffer.zero_()


class _CudaTimer(Timer):
    """Shared by the events and graph timers: ``timed()`` is what one event pair spans."""

    def __init__(self, fn: Callable[[], object], budget: Budget, device: torch.device):
        super().__init__(fn, budget)
        self.device, self.flush = device, L2Flush(device)

    def sync(self) -> None:
        torch.cuda.synchronize(self.device)

    def timed(self) -> None:
        raise NotImplementedError

    def _event_times(self, samples: int, span: Callable[[], None], calls: int) -> list[float]:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(samples)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(samples)]
        for start, end in zip(starts, ends):
            self.flush()
            start.record()
            span()
            end.record()
        self.sync()
        return [start.elapsed_time(end) / 1e3 / calls for start, end in zip(starts, ends)]

    def block(self, samples: int) -> list[float]:
        return self._event_times(samples, self.timed, self.calls_per_sample)

    def untimed_call(self) -> None:
        self.flush()
        self.timed()
        self.sync()


class EventsTimer(_CudaTimer):
    def timed(self) -> None:
        for _ in range(self.calls_per_sample):
            self.fn()

    def warm_up(self) -> float:
        per_call_wall = _warm_up(lambda: (self.flush(), self.fn()), self.budget, self.sync)
        # The GPU time of one call, from a few calls back to back (wall time holds launch and sync latency).
        per_call = self._event_times(1, lambda: [self.fn() for _ in range(PROBE_CALLS)], PROBE_CALLS)[0]
        self.calls_per_sample = calls_per_sample(per_call)
        return per_call_wall + (self.calls_per_sample - 1) * per_call


class GraphTimer(_CudaTimer):
    def _capture(self, calls: int) -> torch.cuda.CUDAGraph:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                for _ in range(calls):
                    self.fn()
        except Exception as error:  # capture fails for host syncs, CPU tensors, ...
            raise TimerError(f"cannot capture in a CUDA graph: {error}") from error
        return graph

    def timed(self) -> None:
        self.graph.replay()

    def warm_up(self) -> float:
        # Warm up eagerly on a side stream first: compiling, autotuning and the caching
        # allocator's first allocations must not happen inside the capture.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            _warm_up(self.fn, self.budget, self.sync)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.graph = self._capture(1)
        per_call = min(self._event_times(PROBE_CALLS, self.graph.replay, 1))
        self.calls_per_sample = calls_per_sample(per_call)
        if self.calls_per_sample > 1:
            self.graph = self._capture(self.calls_per_sample)
        return _warm_up(lambda: (self.flush(), self.graph.replay()), self.budget, self.sync)


def make_timer(fn: Callable[[], object], budget: Budget, device: torch.device, timer: str) -> Timer:
    if device.type == "cpu":
        if timer != "cpu":
            raise ValueError(f"timer {timer!r} needs a CUDA device; on the CPU use 'cpu'")
        return CpuTimer(fn, budget)
    if timer == "events":
        return EventsTimer(fn, budget, device)
    if timer == "graph":
        return GraphTimer(fn, budget, device)
    raise ValueError(f"timer must be one of {TIMERS} (cpu only on the CPU), got {timer!r}")


def _split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` nearly equal positive counts."""
    return [total // parts + (index < total % parts) for index in range(parts)]


def relative_noise(samples: list[float]) -> float:
    """Half the width of the median's bootstrap 95% CI, over the median (inf for no samples or a zero median)."""
    median = float(np.median(samples)) if samples else 0.0
    if median <= 0:
        return math.inf
    low, high = bootstrap_median_ci(samples)
    return (high - low) / 2 / median


def interleave(
    timers: list[Timer],
    seconds_per_sample: list[float],
    budget: Budget,
    on_error: Callable[[int, Exception], None] | None = None,
    watch: BlockWatch | None = None,
) -> list[list[float]]:
    """Samples of each warmed-up timer, taken block by block in turns, for the budget or until quiet (see the
    module docstring). With a ``watch`` (``menagerie.harness.throttle``), a throttled block is taken again.

    A timer whose block raises is reported to ``on_error(index, error)`` and dropped; its samples
    so far are discarded.
    """
    plans = []
    for seconds in seconds_per_sample:
        reps = budget.repetitions(seconds)
        plans.append(_split(reps, min(budget.blocks, reps)))
    samples: list[list[float]] = [[] for _ in timers]
    spent = [0.0 for _ in timers]  # seconds of blocks and their slots
    taken_blocks = [0 for _ in timers]
    active = set(range(len(timers)))
    slot = budget.measure_s / budget.blocks
    max_time = budget.max_time_s or 3 * budget.measure_s
    while active:
        for index in sorted(active):
            if not budget.max_noise and taken_blocks[index] >= len(plans[index]):
                active.discard(index)
                continue
            # Stopping on noise: blocks of one size, for as long as the timer stays.
            reps = plans[index][0 if budget.max_noise else taken_blocks[index]]
            started = time.perf_counter()
            try:
                before = watch.read() if watch else None
                block = timers[index].block(reps)
                retake = watch is not None and watch.throttled(index, before, watch.read()) and watch.retake(index)
                if not retake:
                    samples[index] += block
                    taken_blocks[index] += 1
                while time.perf_counter() - started < slot:
                    timers[index].untimed_call()
            except Exception as error:
                if on_error is None:
                    raise
                on_error(index, error)
                active.discard(index)
                samples[index] = []
                continue
            spent[index] += time.perf_counter() - started
            if budget.max_noise and _done(samples[index], spent[index], max_time, budget):
                active.discard(index)
    return samples


def _done(samples: list[float], spent: float, max_time: float, budget: Budget) -> bool:
    """At least ``min_reps`` samples, and quiet enough or out of time or samples."""
    if len(samples) < budget.min_reps:
        return False
    return relative_noise(samples) <= budget.max_noise or spent >= max_time or len(samples) >= budget.max_reps


def measure(fn: Callable[[], object], budget: Budget, device: torch.device, timer: str) -> list[float]:
    """Per-call samples in seconds of one callable with the timer that suits ``device``."""
    chosen = make_timer(fn, budget, device, timer)
    return interleave([chosen], [chosen.warm_up()], budget)[0]
