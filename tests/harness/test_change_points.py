"""``menagerie.harness.change_points``: the steps in a series of medians that are clear and large enough."""

import numpy as np
import pytest

from menagerie.harness import change_points


def test_an_improvement_and_a_regression_are_both_found():
    rng = np.random.default_rng(7)
    medians = np.exp(rng.normal(0, 0.02, 30)) * np.r_[np.full(10, 1.0), np.full(10, 0.8), np.full(10, 0.9)]
    steps = change_points.detect_steps(medians)
    assert [step.index for step in steps] == [10, 20]
    assert [step.ratio for step in steps] == pytest.approx([0.8, 1.125], rel=0.03)
    assert [(step.before, step.after) for step in steps] == [(10, 10), (10, 10)]


def test_flat_noisy_series_have_no_change_points():
    rng = np.random.default_rng(2026)
    false = sum(
        bool(change_points.detect_steps(np.exp(rng.normal(0, 0.02, length))))
        for length in (6, 10, 20, 35, 50)
        for _ in range(50)
    )
    assert false <= 5  # of 250 series; measured: 0
    # Statistics alone (threshold 0): 5% noise, the t-test keeps false alarms near alpha per series.
    false = sum(bool(change_points.detect_steps(np.exp(rng.normal(0, 0.05, 30)), threshold=0)) for _ in range(200))
    assert false <= 8  # expected about 2 of 200


def test_steps_below_the_threshold_or_one_outlier_are_not_change_points():
    rng = np.random.default_rng(3)
    small = np.exp(rng.normal(0, 0.002, 20)) * np.r_[np.ones(10), np.full(10, 1.03)]
    assert change_points.detect_steps(small) == []  # clear but 3% < 5%
    assert [step.index for step in change_points.detect_steps(small, threshold=0.02)] == [10]
    outlier = np.exp(rng.normal(0, 0.02, 20))
    outlier[9] *= 1.5
    assert change_points.detect_steps(outlier) == []
    assert change_points.detect_steps([1.0, 1.0, 1.0, 2.0, 2.0]) == []  # shorter than 2 * min_segment
    assert [step.index for step in change_points.detect_steps([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])] == [3]  # no noise at all


@pytest.mark.parametrize(
    "options, message",
    [(dict(threshold=-0.1), "threshold"), (dict(alpha=0), "alpha"), (dict(min_segment=1), "min_segment")],
)
def test_detect_steps_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        change_points.detect_steps([1.0] * 10, **options)
