import copy

import numpy as np
import pytest

from menagerie.harness.gate import MIN_ROWS_ACROSS, UNIFORM_KEY, _benjamini_hochberg, gate
from tests.harness.noise import Suite, regressions, trial

TRIALS = 200
PLANTED = 3
SAMPLES = 100  # per replicate; fewer than a real run's 500 keeps the test fast
NO_POWER_CHECK = {"max_undetectable": 1.0}  # for the tests of the decision itself; the power check has its own


@pytest.fixture(scope="module")
def trials():
    """Per trial (a fresh suite of 100 rows): BASELINE a history of 10 one-replicate runs, NEW one run
    of 3 replicates, the same code (A/A) or with PLANTED rows 7% or 10% slower. The power check is off
    here (3 replicates cannot see 10% in the noisiest rows: underpowered); the tests below it check it."""
    return [
        trial(seed, (0.0, 0.07, 0.10), samples=SAMPLES, planted=PLANTED, **NO_POWER_CHECK) for seed in range(TRIALS)
    ]


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
            result = gate(records, copy.deepcopy(records), **NO_POWER_CHECK)
            assert result.passed, result.reasons
            assert {row.verdict for row in result.rows} == {"unchanged"}
            assert all(row.ratio == 1.0 for row in result.rows) and result.uniform.ratio == 1.0


def test_uniform_slowdown_is_its_own_finding():
    suite = Suite(seed=3)
    result = gate(
        suite.runs(10, samples=SAMPLES),
        suite.runs(1, replicates=3, samples=SAMPLES, seed=1, uniform_slowdown=0.10),
        **NO_POWER_CHECK,
    )
    assert result.uniform.key == UNIFORM_KEY and result.uniform.verdict == "regression"
    assert not result.passed and any(reason.startswith("*/") for reason in result.reasons)
    assert not regressions(result)
    assert all(row.raw_ratio > 1.05 for row in result.rows)


def test_improvements_are_reported_not_failed():
    suite = Suite(seed=4)
    result = gate(
        suite.runs(10, samples=SAMPLES),
        suite.runs(1, replicates=3, samples=SAMPLES, seed=1, slowdowns={5: -0.2}),
        **NO_POWER_CHECK,
    )
    verdicts = {int(row.key[1][3:]): row.verdict for row in result.rows}
    assert verdicts[5] == "improvement" and result.passed


def test_few_rows_are_compared_without_offsets():
    suite = Suite(rows=MIN_ROWS_ACROSS - 6, seed=5)
    result = gate(
        suite.runs(10, samples=SAMPLES),
        suite.runs(1, replicates=3, samples=SAMPLES, seed=1, slowdowns={0: 0.5}),
        **NO_POWER_CHECK,
    )
    assert result.uniform is None and regressions(result) == {0}
    assert result.rows[0].ratio == result.rows[0].raw_ratio


def test_one_replicate_per_side_is_undecided_and_fails():
    suite = Suite(seed=6, rows=20)
    for new in (suite.runs(1, samples=SAMPLES, seed=1), suite.runs(1, samples=SAMPLES, seed=0)):
        result = gate(suite.runs(1, samples=SAMPLES, seed=0), new, **NO_POWER_CHECK)
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
    result = gate(baseline, new, **NO_POWER_CHECK)
    assert regressions(result) == {2} and result.rows[2].n_baseline == 10 and result.rows[2].n_new == 3
    assert gate(baseline, baseline, **NO_POWER_CHECK).passed


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
    "params_changed": (lambda record: edit_row(record, 1, params={"index": 99}), "params_changed", "allow_mismatch"),
    "device": (lambda record: record["provenance"].update(device="NVIDIA A100"), "device_mismatch", "allow_mismatch"),
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
    result = gate(baseline, new, **NO_POWER_CHECK)
    assert not result.passed and any(reason in text for text in result.reasons), result.reasons
    everything = dict(allow_missing=True, allow_mismatch=True)
    if flag is None:
        assert not gate(baseline, new, **everything, **NO_POWER_CHECK).passed
    else:
        allowed = gate(baseline, new, **{flag: True}, **NO_POWER_CHECK)
        assert allowed.passed, allowed.reasons
        others = {name: value for name, value in everything.items() if name != flag}
        assert not gate(baseline, new, **others, **NO_POWER_CHECK).passed


def test_rows_only_in_new_and_skipped_on_both_sides_pass():
    baseline = Suite(rows=4, seed=9).runs(1, replicates=3, samples=20)
    skip(baseline[0])
    new = copy.deepcopy(baseline)
    new[0]["rows"].append({**copy.deepcopy(new[0]["rows"][0]), "case": "brand_new"})
    result = gate(baseline, new, **NO_POWER_CHECK)
    verdicts = {row.key[1]: row.verdict for row in result.rows}
    assert verdicts["brand_new"] == "new" and verdicts["row001"] == "skipped" and result.passed


def test_a_row_without_observations_is_undecided():
    baseline = Suite(rows=4, seed=10).runs(1, replicates=3, samples=20)
    new = copy.deepcopy(baseline)
    edit_row(new[0], 1, replicate_medians_s=[])
    row = gate(baseline, new, **NO_POWER_CHECK).rows[1]
    assert row.verdict == "undecided" and row.failing and row.ratio is None and row.n_new == 0


def test_bad_medians_are_named():
    baseline = Suite(rows=4, seed=10).runs(1, replicates=3, samples=20)
    new = copy.deepcopy(baseline)
    edit_row(new[0], 1, replicate_medians_s=[1e-3, 0.0])
    with pytest.raises(ValueError, match="synthetic.op/row001/.*must be positive seconds"):
        gate(baseline, new, **NO_POWER_CHECK)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(baseline=[]), "at least one run record"),
        (dict(fdr=0.0), "fdr must be in"),
        (dict(threshold=-0.1), "must be >= 0"),
        (dict(max_undetectable=0.0), "max_undetectable must be > 0"),
    ],
)
def test_bad_arguments_are_named(arguments, message):
    records = Suite(rows=2).runs(1, samples=5)
    with pytest.raises(ValueError, match=message):
        gate(**{"baseline": records, "new": records, **arguments})


def test_benjamini_hochberg_adjusts_by_rank():
    adjusted = _benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.5]))
    assert np.allclose(adjusted, [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])


# The power check: the smallest slowdown each row (and the uniform shift) would be caught at, and the
# underpowered verdict. The synthetic study of issue 26: 300 rows, 2% row noise, 2% whole-process offsets.


@pytest.fixture(scope="module")
def study():
    from tests.harness.noise import issue_study

    return issue_study(trials=100)


def test_a_uniform_20_percent_slowdown_never_passes_at_2_vs_2(study):
    assert study["uniform 20% slowdown passed (2 vs 2)"] == 0


def test_a_uniform_10_percent_slowdown_is_caught_at_5_vs_5(study):
    assert study["uniform 10% slowdown caught (5 vs 5)"] >= 0.95


def test_aa_comparisons_at_5_vs_5_rarely_fail(study):
    assert study["A/A comparisons failed (5 vs 5)"] <= 0.02


def test_a_10_percent_slowdown_of_one_row_among_300_is_caught(study):
    assert study["single-row 10% slowdown caught among 300 (5 vs 5)"] >= 0.90


def test_the_uniform_shift_is_tested_outside_the_rows_family():
    """All 300 rows 20% slower at 2 vs 2: the shift is a regression at its own level (q = p), where BH over
    the rows (q = p x 300 / rank) once made it "unchanged"; each row is underpowered, with the count it needs."""
    suite = Suite(rows=300, seed=3, row_spread=(0.02, 0.02), run_spread=0.02)
    baseline = suite.runs(1, replicates=2, samples=50, seed=0)
    result = gate(baseline, suite.runs(1, replicates=2, samples=50, seed=1, uniform_slowdown=0.20))
    assert result.uniform.verdict == "regression" and result.uniform.q_value == result.uniform.p_value
    assert 1.15 < result.uniform.ratio < 1.25 and not result.passed
    assert {row.verdict for row in result.rows} == {"underpowered"}
    row = result.rows[0]
    assert row.failing and row.detectable > 0.10 and row.replicates_needed > 2
    assert f"{row.replicates_needed} replicates per side would bring it under" in row.detail


def test_more_replicates_make_a_row_decidable_at_the_count_suggested():
    suite = Suite(rows=300, seed=4, row_spread=(0.02, 0.02), run_spread=0.02)
    underpowered = gate(
        suite.runs(1, replicates=2, samples=50, seed=0), suite.runs(1, replicates=2, samples=50, seed=1)
    )
    needed = max(row.replicates_needed for row in underpowered.rows)
    enough = gate(
        suite.runs(1, replicates=needed + 1, samples=50, seed=0),
        suite.runs(1, replicates=needed + 1, samples=50, seed=1),
    )
    assert all(row.detectable <= 0.10 for row in enough.rows), max(row.detectable for row in enough.rows)


def test_a_looser_limit_turns_underpowered_back_into_unchanged():
    suite = Suite(rows=300, seed=5, row_spread=(0.02, 0.02), run_spread=0.02)
    baseline, new = suite.runs(1, replicates=2, samples=50, seed=0), suite.runs(1, replicates=2, samples=50, seed=1)
    assert {row.verdict for row in gate(baseline, new).rows} == {"underpowered"}
    assert {row.verdict for row in gate(baseline, new, max_undetectable=0.5).rows} == {"unchanged"}
