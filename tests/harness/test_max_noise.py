"""``--max-noise``: each implementation samples until its median is known well enough, or its time runs out."""

import json

import pytest

from menagerie.harness import runner
from menagerie.harness.registry import Impl
from menagerie.harness.timing import Budget, interleave, relative_noise
from tests.harness.toy import correct, quick_config, toy_benchmark


class Scripted:
    """A warmed-up timer whose samples follow a script: quiet (all alike) or noisy (alternating 1 and 3)."""

    calls_per_sample = 1

    def __init__(self, noisy: bool):
        self.noisy, self.taken = noisy, 0

    def block(self, reps):
        start, self.taken = self.taken, self.taken + reps
        return [1.0 + 2.0 * (self.noisy and n % 2) for n in range(start, self.taken)]

    def untimed_call(self):
        pass


def test_relative_noise_is_the_median_ci_half_width_over_the_median():
    assert relative_noise([1.0] * 20) == 0.0
    assert relative_noise([1.0, 3.0] * 10) == pytest.approx(0.5)  # median 2, CI [1, 3]
    assert relative_noise([]) == float("inf")


def test_a_quiet_timer_leaves_the_rotation_once_it_has_min_reps_and_a_noisy_one_at_max_time():
    budget = Budget(
        warmup_s=0.0, measure_s=0.02, min_reps=6, max_reps=10_000, blocks=10, max_noise=0.01, max_time_s=0.05
    )
    quiet, noisy = Scripted(noisy=False), Scripted(noisy=True)
    samples = interleave([quiet, noisy], [0.001, 0.001], budget)  # 20 planned, so blocks of 2
    assert len(samples[0]) == 6  # three blocks: the first with min_reps, all alike
    assert len(samples[1]) > 6 and relative_noise(samples[1]) > budget.max_noise  # ran until max_time_s
    assert len(samples[1]) >= 2 * int(budget.max_time_s / (budget.measure_s / budget.blocks)) - 2


def test_max_reps_also_ends_a_noisy_timer_and_min_reps_comes_first():
    budget = Budget(warmup_s=0.0, measure_s=0.01, min_reps=4, max_reps=8, blocks=10, max_noise=1e-9, max_time_s=100.0)
    [taken] = interleave([Scripted(noisy=True)], [0.001], budget)
    assert len(taken) == 8
    budget = Budget(warmup_s=0.0, measure_s=0.01, min_reps=12, max_reps=100, blocks=10, max_noise=0.5, max_time_s=1e-6)
    [taken] = interleave([Scripted(noisy=True)], [0.001], budget)
    assert len(taken) == 12  # past max_time_s until min_reps


def test_the_fixed_budget_is_unchanged_without_max_noise():
    budget = Budget(warmup_s=0.0, measure_s=0.01, min_reps=5, max_reps=20, blocks=4)
    assert [len(taken) for taken in interleave([Scripted(False), Scripted(True)], [0.001, 0.001], budget)] == [10, 10]


def test_a_row_still_noisy_at_max_time_is_recorded_noisy_with_its_noise():
    config = quick_config(
        budget=Budget(warmup_s=0.0, measure_s=0.01, min_reps=5, max_reps=20, max_noise=1e-9, max_time_s=0.02)
    )
    record = runner.run([toy_benchmark([Impl("correct", correct)])], config)
    for row in record["rows"]:
        assert row["status"] == "noisy" and "above --max-noise" in row["reason"]
        assert row["stats"]["noise"] > 0 and row["samples_s"]
    from menagerie.harness.results import validate

    validate(json.loads(json.dumps(record)))


@pytest.mark.parametrize("fields", [dict(max_noise=-0.1), dict(max_time_s=0.0)])
def test_bad_noise_settings_are_refused(fields):
    with pytest.raises(ValueError, match="max_noise"):
        Budget(**fields)
