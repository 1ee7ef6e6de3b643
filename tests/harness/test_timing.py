import time

import pytest
import torch

from menagerie.harness.timing import BATCH_SPAN_S, Budget, CpuTimer, calls_per_sample, interleave, measure


def test_repetitions_fit_the_budget_within_bounds():
    budget = Budget(warmup_s=0.0, measure_s=1.0, min_reps=5, max_reps=100)
    assert budget.repetitions(0.1) == 10
    assert budget.repetitions(10.0) == 5
    assert budget.repetitions(1e-6) == 100


def test_cpu_timer_keeps_every_sample_and_measures_the_call():
    samples = measure(
        lambda: time.sleep(0.002),
        Budget(warmup_s=0.0, measure_s=0.05, min_reps=5, max_reps=50),
        torch.device("cpu"),
        "cpu",
    )
    assert 5 <= len(samples) <= 50
    assert min(samples) >= 0.002


def test_short_gpu_calls_are_batched_long_ones_are_not():
    assert calls_per_sample(20e-6) == calls_per_sample(10e-6) == 1
    batched = calls_per_sample(2e-6)
    assert 50 <= batched <= 51 and batched * 2e-6 >= BATCH_SPAN_S
    assert calls_per_sample(0.0) >= 1


class Clock:
    """Records which timer ran when (the block calls and the untimed fill-in calls)."""

    def __init__(self):
        self.events = []

    def fn(self, name, seconds):
        def call():
            self.events.append((name, time.perf_counter()))
            time.sleep(seconds)

        return call


def test_samples_interleave_implementations_and_span_the_budget():
    clock = Clock()
    budget = Budget(warmup_s=0.0, measure_s=0.2, min_reps=10, max_reps=10, blocks=5)
    timers = [CpuTimer(clock.fn("a", 0.001), budget), CpuTimer(clock.fn("b", 0.001), budget)]
    started = time.perf_counter()
    samples = interleave(timers, [0.001, 0.001], budget)
    elapsed = time.perf_counter() - started
    assert [len(taken) for taken in samples] == [10, 10]
    # Each timer's blocks own a slot of measure_s / blocks: together they fill both budgets.
    assert elapsed >= 2 * budget.measure_s
    order = [name for name, _ in clock.events]
    switches = sum(1 for first, second in zip(order, order[1:]) if first != second)
    assert switches == 2 * budget.blocks - 1  # a, b, a, b, ... block by block
    times_a = [at for name, at in clock.events if name == "a"]
    assert times_a[-1] - times_a[0] >= 0.8 * (2 * budget.measure_s - 2 * budget.measure_s / budget.blocks)


def test_a_timer_that_crashes_mid_run_is_dropped_and_reported():
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("device lost")

    budget = Budget(warmup_s=0.0, measure_s=0.01, min_reps=4, max_reps=4, blocks=2)
    crashed = []
    samples = interleave(
        [CpuTimer(flaky, budget), CpuTimer(lambda: None, budget)],
        [1.0, 1.0],
        budget,
        on_error=lambda index, error: crashed.append((index, str(error))),
    )
    assert crashed == [(0, "device lost")] and samples[0] == [] and len(samples[1]) == 4


@pytest.mark.parametrize("fields", [dict(measure_s=0), dict(min_reps=0), dict(min_reps=10, max_reps=5), dict(blocks=0)])
def test_bad_budgets_are_rejected(fields):
    with pytest.raises(ValueError):
        Budget(**fields)


def test_gpu_timers_refuse_the_cpu():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        measure(lambda: None, Budget(), torch.device("cpu"), "events")


@pytest.mark.gpu
@pytest.mark.parametrize("timer", ["events", "graph"])
def test_gpu_timers_agree_on_a_matmul(timer):
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    samples = measure(lambda: a @ a, Budget(measure_s=0.3), torch.device("cuda"), timer)
    assert all(sample > 0 for sample in samples)


@pytest.mark.gpu
@pytest.mark.parametrize("timer", ["events", "graph"])
def test_tiny_kernels_are_timed_in_batches(timer):
    from menagerie.harness.timing import make_timer

    x = torch.randn(1024, device="cuda")
    chosen = make_timer(lambda: x.add_(1.0), Budget(measure_s=0.1), torch.device("cuda"), timer)
    chosen.warm_up()
    assert chosen.calls_per_sample > 1
    assert all(0 < sample < 20e-6 for sample in chosen.block(20))
