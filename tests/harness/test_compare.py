import copy

import numpy as np

from harness import runner
from harness.compare import compare_runs
from harness.registry import Impl

from tests.harness.test_stats import realistic_samples
from tests.harness.toy import correct, quick_config, toy_benchmark
from harness.stats import summarize


def base_record():
    return runner.run([toy_benchmark([Impl("correct", correct)])], quick_config())


def with_samples(record, impl, samples):
    record = copy.deepcopy(record)
    for row in record["rows"]:
        if row["impl"] == impl:
            row["samples_s"] = [float(s) for s in samples]
            row["stats"] = summarize(samples)
    return record


def verdicts(comparison):
    return {row.key[2]: row.verdict for row in comparison.rows}


def test_identical_runs_pass():
    record = base_record()
    comparison = compare_runs(record, record)
    assert comparison.passed and set(verdicts(comparison).values()) == {"unchanged"}


def test_slowdown_regresses_and_speedup_improves():
    rng = np.random.default_rng(0)
    record = base_record()
    old = with_samples(with_samples(record, "correct", realistic_samples(rng, 1e-3)),
                       "reference", realistic_samples(rng, 1e-3))
    new = with_samples(with_samples(record, "correct", realistic_samples(rng, 1.3e-3)),
                       "reference", realistic_samples(rng, 0.7e-3))
    comparison = compare_runs(old, new)
    assert verdicts(comparison) == {"correct": "regression", "reference": "improvement"}
    assert not comparison.passed
    regression = next(row for row in comparison.rows if row.verdict == "regression")
    assert regression.ci95[0] > 1.0 and regression.p_value < 0.01


def test_threshold_is_adjustable():
    rng = np.random.default_rng(1)
    record = base_record()
    old = with_samples(record, "correct", realistic_samples(rng, 1e-3, n=300))
    new = with_samples(record, "correct", realistic_samples(rng, 1.1e-3, n=300))
    assert verdicts(compare_runs(old, new, threshold=0.05))["correct"] == "regression"
    assert verdicts(compare_runs(old, new, threshold=0.2))["correct"] == "unchanged"


def test_accuracy_failure_fails_even_when_faster():
    record = base_record()
    new = copy.deepcopy(record)
    for row in new["rows"]:
        if row["impl"] == "correct":
            row["status"], row["reason"] = "accuracy_failed", "3 elements outside"
    comparison = compare_runs(record, new)
    assert verdicts(comparison)["correct"] == "accuracy_failed" and not comparison.passed


def test_new_and_missing_rows_are_reported_not_failed():
    record = base_record()
    old = copy.deepcopy(record)
    new = copy.deepcopy(record)
    old["rows"] = [row for row in old["rows"] if row["impl"] == "reference"]
    new["rows"] = [row for row in new["rows"] if row["impl"] == "correct"]
    comparison = compare_runs(old, new)
    assert verdicts(comparison) == {"correct": "new", "reference": "missing"}
    assert comparison.passed
