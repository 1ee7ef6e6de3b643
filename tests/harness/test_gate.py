import copy

import numpy as np
import pytest

from harness.gate import MIN_ROWS_ACROSS, UNIFORM_KEY, _benjamini_hochberg, gate
from tests.harness.noise import Suite, regressions, trial

TRIALS = 200
PLANTED = 3
SAMPLES = 100  # per replicate; fewer than a real run's 500 keeps the test fast


@pytest.fixture(scope="module")
def trials():
    """Per trial (a fresh suite of 100 rows): BASELINE a history of 10 one-replicate runs, NEW one run
    of 3 replicates, the same code (A/A) or with PLANTED rows 7% or 10% slower."""
    return [trial(seed, (0.0, 0.07, 0.10), samples=SAMPLES, planted=PLANTED) for seed in range(TRIALS)]


def test_aa_comparisons_almost_never_fail(trials):
    failed = [outcome[0.0] for outcome in trials if not outcome[0.0].passed]
    assert len(failed) <= 1, [result.reasons for result in failed]


@pytest.mark.parametrize("slowdown, trial_rate, row_rate", [(0.10, 0.95, 0.90), (0.07, 0.80, 0.50)])
def test_slowdowns_of_a_few_rows_are_caught(trials, slowdown, trial_rate, row_rate):
    found = [regressions(outcome[slowdown]) for outcome in trials]
    hits = [rows & set(range(PLANTED)) for rows in found]
    assert sum(bool(hit) for hit in hits) >= trial_rate * TRIALS
    assert sum(len(hit) for hit in hits) >= row_rate * TRIALS * PLANTED
    assert all(not outcome[slowdown].passed for outcome, hit in zip(trials, hits) if hit)
    false = sum(len(rows - hit) for rows, hit in zip(found, hits))
    assert false <= 0.05 * sum(len(rows) for rows in found)  # the false discovery proportion


def test_identical_inputs_never_flag():
    for seed in range(5):
        suite = Suite(seed=seed)
        for records in (suite.runs(10, samples=20), suite.runs(1, replicates=3, samples=20)):
            result = gate(records, copy.deepcopy(records))
            assert result.passed, result.reasons
            assert {row.verdict for row in result.rows} == {"unchanged"}
            assert all(row.ratio == 1.0 for row in result.rows) and result.uniform.ratio == 1.0


def test_uniform_slowdown_is_its_own_finding():
    suite = Suite(seed=3)
    result = gate(suite.runs(10, samples=SAMPLES), suite.runs(1, replicates=3, samples=SAMPLES, seed=1,
                                                              uniform_slowdown=0.10))
    assert result.uniform.key == UNIFORM_KEY and result.uniform.verdict == "regression"
    assert not result.passed and any(reason.startswith("*/") for reason in result.reasons)
    assert not regressions(result)
    assert all(row.raw_ratio > 1.05 for row in result.rows)


def test_improvements_are_reported_not_failed():
    suite = Suite(seed=4)
    result = gate(suite.runs(10, samples=SAMPLES),
                  suite.runs(1, replicates=3, samples=SAMPLES, seed=1, slowdowns={5: -0.2}))
    verdicts = {int(row.key[1][3:]): row.verdict for row in result.rows}
    assert verdicts[5] == "improvement" and result.passed


def test_few_rows_are_compared_without_offsets():
    suite = Suite(rows=MIN_ROWS_ACROSS - 6, seed=5)
    result = gate(suite.runs(10, samples=SAMPLES), suite.runs(1, replicates=3, samples=SAMPLES, seed=1,
                                                              slowdowns={0: 0.5}))
    assert result.uniform is None and regressions(result) == {0}
    assert result.rows[0].ratio == result.rows[0].raw_ratio


def test_one_replicate_per_side_is_undecided_and_fails():
    suite = Suite(seed=6, rows=20)
    for new in (suite.runs(1, samples=SAMPLES, seed=1), suite.runs(1, samples=SAMPLES, seed=0)):
        result = gate(suite.runs(1, samples=SAMPLES, seed=0), new)
        assert {row.verdict for row in result.rows} == {"undecided"}
        assert not result.passed and "undecided" in result.reasons[0]
        assert result.rows[0].n_baseline == result.rows[0].n_new == 1


def as_v1(records):
    records = copy.deepcopy(records)
    for record in records:
        record["schema_version"] = 1
        for row in record["rows"]:
            row["stats"]["median_s"] = row.pop("replicate_medians_s")[0]
    return records


def test_v1_records_are_one_replicate_each():
    suite = Suite(seed=7, rows=30)
    baseline = as_v1(suite.runs(10, samples=SAMPLES))
    new = as_v1(suite.runs(3, samples=SAMPLES, seed=1, slowdowns={2: 0.3}))
    result = gate(baseline, new)
    assert regressions(result) == {2} and result.rows[2].n_baseline == 10 and result.rows[2].n_new == 3
    assert gate(baseline, baseline).passed


# Fail-closed cases: NEW is BASELINE's own file, edited, so only the edit can fail the gate.

def edit_row(record, index, **fields):
    record["rows"][index].update(fields)


def skip(record):
    edit_row(record, 1, status="skipped", reason="needs a GPU", samples_s=[], replicate_medians_s=[], stats=None)


def fail(status):
    return lambda record: edit_row(record, 1, status=status, reason=f"{status} in the test")


def add_bfloat16_row(record):
    record["rows"].append({**copy.deepcopy(record["rows"][0]), "dtype": "bfloat16"})


def set_all_bfloat16(record):
    for row in record["rows"]:
        row["dtype"] = "bfloat16"


CASES = {
    "missing": (lambda record: record["rows"].pop(1), "missing", "allow_missing"),
    "newly_skipped": (skip, "newly_skipped", "allow_missing"),
    "error": (fail("error"), "error", None),
    "accuracy_failed": (fail("accuracy_failed"), "accuracy_failed", None),
    "params_changed": (lambda record: edit_row(record, 1, params={"index": 99}), "params_changed",
                       "allow_mismatch"),
    "device": (lambda record: record["provenance"].update(device="NVIDIA A100"), "device_mismatch",
               "allow_mismatch"),
    "timer": (lambda record: record["config"].update(timer="graph"), "timer_mismatch", "allow_mismatch"),
    "size": (lambda record: record["config"].update(size="full"), "size_mismatch", "allow_mismatch"),
    "dtype_added": (add_bfloat16_row, "dtype_mismatch", "allow_mismatch"),
    "dtype_dropped": (set_all_bfloat16, "missing_dtype", "allow_mismatch"),
}


@pytest.mark.parametrize("case", CASES)
def test_fail_closed(case):
    edit, reason, flag = CASES[case]
    baseline = Suite(rows=4, seed=8).runs(1, replicates=3, samples=20)
    new = copy.deepcopy(baseline)
    edit(new[0])
    result = gate(baseline, new)
    assert not result.passed and any(reason in text for text in result.reasons), result.reasons
    everything = dict(allow_missing=True, allow_mismatch=True)
    if flag is None:
        assert not gate(baseline, new, **everything).passed
    else:
        assert gate(baseline, new, **{flag: True}).passed, gate(baseline, new, **{flag: True}).reasons
        assert not gate(baseline, new, **{name: value for name, value in everything.items() if name != flag}).passed


def test_rows_only_in_new_and_skipped_on_both_sides_pass():
    baseline = Suite(rows=4, seed=9).runs(1, replicates=3, samples=20)
    skip(baseline[0])
    new = copy.deepcopy(baseline)
    new[0]["rows"].append({**copy.deepcopy(new[0]["rows"][0]), "case": "brand_new"})
    result = gate(baseline, new)
    verdicts = {row.key[1]: row.verdict for row in result.rows}
    assert verdicts["brand_new"] == "new" and verdicts["row001"] == "skipped" and result.passed


def test_a_row_without_observations_is_undecided():
    baseline = Suite(rows=4, seed=10).runs(1, replicates=3, samples=20)
    new = copy.deepcopy(baseline)
    edit_row(new[0], 1, replicate_medians_s=[])
    row = gate(baseline, new).rows[1]
    assert row.verdict == "undecided" and row.failing and row.ratio is None and row.n_new == 0


def test_bad_medians_are_named():
    baseline = Suite(rows=4, seed=10).runs(1, replicates=3, samples=20)
    new = copy.deepcopy(baseline)
    edit_row(new[0], 1, replicate_medians_s=[1e-3, 0.0])
    with pytest.raises(ValueError, match="synthetic.op/row001/.*must be positive seconds"):
        gate(baseline, new)


@pytest.mark.parametrize("arguments, message", [
    (dict(baseline=[]), "at least one run record"),
    (dict(fdr=0.0), "fdr must be in"),
    (dict(threshold=-0.1), "must be >= 0"),
])
def test_bad_arguments_are_named(arguments, message):
    records = Suite(rows=2).runs(1, samples=5)
    with pytest.raises(ValueError, match=message):
        gate(**{"baseline": records, "new": records, **arguments})


def test_benjamini_hochberg_adjusts_by_rank():
    adjusted = _benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.5]))
    assert np.allclose(adjusted, [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
