"""Throttled blocks (``harness/throttle.py``), with a fake NVML: chosen blocks read a low clock or a slowdown
reason; they are taken again, or kept and flagged, and a throttled row is undecided at the gate."""

import json

import pytest

from menagerie.harness import runner, throttle
from menagerie.harness.gate import gate
from menagerie.harness.registry import Impl
from menagerie.harness.timing import Budget, interleave
from tests.harness.toy import correct, quick_config, toy_benchmark

FULL_CLOCK, POWER_CAP = 1980.0, 0x4


class FakeNvml:
    """Clock reads in order: the full clock, except at the read numbers in ``slow`` (a low clock) and ``capped``
    (the full clock with the power-cap reason); ``always`` slows every read after the first."""

    def __init__(self, slow=(), capped=(), always=False):
        self.reads, self.slow, self.capped, self.always = 0, set(slow), set(capped), always

    def __call__(self):
        self.reads += 1
        if self.always and self.reads > 1:
            return FULL_CLOCK, POWER_CAP
        if self.reads in self.slow:
            return 0.5 * FULL_CLOCK, 0
        return FULL_CLOCK, POWER_CAP if self.reads in self.capped else 0


class Counting:
    """A warmed-up timer whose samples number the blocks it took: block k gives samples equal to k."""

    calls_per_sample = 1

    def __init__(self):
        self.blocks = 0

    def block(self, reps):
        self.blocks += 1
        return [float(self.blocks)] * reps

    def untimed_call(self):
        pass


def test_a_low_clock_or_a_slowdown_reason_makes_a_block_throttled():
    watch = throttle.BlockWatch(FakeNvml(slow=[3], capped=[5]))
    watch.calibrate()  # read 1: the reference
    assert not watch.throttled(0, watch.read(), (FULL_CLOCK, 0))  # read 2
    assert watch.throttled(0, watch.read(), (FULL_CLOCK, 0))  # read 3: half the clock
    assert watch.throttled(1, (FULL_CLOCK, 0), (FULL_CLOCK, 0)) is False
    watch.read()  # read 4
    assert watch.throttled(1, watch.read(), (FULL_CLOCK, 0))  # read 5: power cap
    assert watch.reasons_seen[1] == {"power cap"} and "SM clock 990 MHz < 90% of 1980 MHz" in watch.reasons_seen[0]


def test_throttled_blocks_are_taken_again_and_their_samples_dropped():
    budget = Budget(warmup_s=0.0, measure_s=0.004, min_reps=8, max_reps=8, blocks=4)  # 4 blocks of 2 samples
    watch = throttle.BlockWatch(FakeNvml(slow=[4]))  # the second block's closing read
    watch.calibrate()
    timer = Counting()
    [samples] = interleave([timer], [1.0], budget, watch=watch)
    assert timer.blocks == 5 and samples == [1.0, 1.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0]  # block 2 dropped, retaken
    assert watch.summary(0)["retaken_blocks"] == 1 and watch.summary(0)["throttled_blocks_kept"] == 0


def test_after_max_retakes_throttled_blocks_are_kept_and_counted():
    budget = Budget(warmup_s=0.0, measure_s=0.002, min_reps=4, max_reps=4, blocks=2)
    watch = throttle.BlockWatch(FakeNvml(always=True), max_retakes=3)
    watch.calibrate()
    [samples] = interleave([Counting()], [1.0], budget, watch=watch)
    assert len(samples) == 4 and watch.retaken[0] == 3 and watch.kept_throttled[0] == 2


@pytest.fixture
def fake_gpu_clock(monkeypatch):
    """The runner's NVML reader, on the CPU, replaced by a fake one the test configures."""
    chosen = {}
    monkeypatch.setattr(throttle, "nvml_reader", lambda device: chosen["reader"])
    return chosen


def test_a_row_still_throttled_after_its_retakes_is_throttled_and_undecided_at_the_gate(fake_gpu_clock):
    fake_gpu_clock["reader"] = FakeNvml()
    steady = runner.run([toy_benchmark([Impl("correct", correct)])], quick_config())
    assert all(row["status"] == "ok" and row["throttle"][0]["retaken_blocks"] == 0 for row in steady["rows"])
    fake_gpu_clock["reader"] = FakeNvml(always=True)
    throttled = runner.run([toy_benchmark([Impl("correct", correct)])], quick_config())
    for row in throttled["rows"]:
        assert row["status"] == "throttled" and "power cap" in row["reason"]
        assert row["throttle"][0]["retaken_blocks"] == throttle.DEFAULT_MAX_RETAKES
    from menagerie.harness.results import validate

    validate(json.loads(json.dumps(throttled)))
    result = gate([steady], [throttled], max_undetectable=1e9)
    assert not result.passed and {row.verdict for row in result.rows if row.key[2] == "correct"} == {"undecided"}


def test_the_cpu_has_no_clock_to_watch():
    import torch

    assert throttle.nvml_reader(torch.device("cpu")) is None
