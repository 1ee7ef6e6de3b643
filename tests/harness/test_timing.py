import time

import pytest
import torch

from harness.timing import Budget, measure, time_cpu


def test_repetitions_fit_the_budget_within_bounds():
    budget = Budget(warmup_s=0.0, measure_s=1.0, min_reps=5, max_reps=100)
    assert budget.repetitions(0.1) == 10
    assert budget.repetitions(10.0) == 5
    assert budget.repetitions(1e-6) == 100


def test_cpu_timer_keeps_every_sample_and_measures_the_call():
    samples = time_cpu(lambda: time.sleep(0.002), Budget(warmup_s=0.0, measure_s=0.05, min_reps=5, max_reps=50))
    assert 5 <= len(samples) <= 50
    assert min(samples) >= 0.002


@pytest.mark.parametrize("fields", [dict(measure_s=0), dict(min_reps=0), dict(min_reps=10, max_reps=5)])
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
