import numpy as np
import pytest

from harness.stats import bootstrap_median_ci, compare_samples, summarize
from harness.compare import DEFAULT_ALPHA, DEFAULT_THRESHOLD


def realistic_samples(rng, median_s, n=60):
    """Timing-like noise: a floor, ~3% log-normal jitter and a 5% tail of slow outliers."""
    samples = median_s * rng.lognormal(mean=0.0, sigma=0.03, size=n)
    outliers = rng.random(n) < 0.05
    samples[outliers] *= rng.uniform(1.2, 2.0, size=outliers.sum())
    return samples


def is_regression(old, new):
    test = compare_samples(old, new)
    return test.ratio > 1 + DEFAULT_THRESHOLD and test.p_slower < DEFAULT_ALPHA


def test_summary_orders_quartiles_and_brackets_the_median():
    rng = np.random.default_rng(0)
    samples = realistic_samples(rng, 1e-3)
    summary = summarize(samples)
    assert summary["n"] == samples.size
    assert summary["min_s"] <= summary["q25_s"] <= summary["median_s"] <= summary["q75_s"] <= summary["max_s"]
    assert summary["iqr_s"] == pytest.approx(summary["q75_s"] - summary["q25_s"])
    low, high = summary["ci95_s"]
    assert low <= summary["median_s"] <= high
    assert summary["median_s"] == pytest.approx(np.median(samples))


def test_bootstrap_interval_narrows_with_more_samples():
    rng = np.random.default_rng(1)
    few = bootstrap_median_ci(realistic_samples(rng, 1.0, n=10))
    many = bootstrap_median_ci(realistic_samples(rng, 1.0, n=1000))
    assert many[1] - many[0] < few[1] - few[0]


def test_empty_samples_are_rejected():
    with pytest.raises(ValueError, match="non-empty"):
        summarize([])


def test_identical_samples_never_flag():
    rng = np.random.default_rng(2)
    for _ in range(50):
        samples = realistic_samples(rng, 1e-3)
        assert not is_regression(samples, samples.copy())


def test_same_distribution_does_not_flag():
    rng = np.random.default_rng(3)
    flagged = sum(is_regression(realistic_samples(rng, 1e-3), realistic_samples(rng, 1e-3)) for _ in range(100))
    assert flagged == 0


def test_planted_twenty_percent_slowdown_always_flags():
    rng = np.random.default_rng(4)
    for _ in range(50):
        old, new = realistic_samples(rng, 1e-3), realistic_samples(rng, 1.2e-3)
        assert is_regression(old, new)


def test_two_percent_slowdown_is_under_the_threshold():
    rng = np.random.default_rng(5)
    for _ in range(50):
        old, new = realistic_samples(rng, 1e-3, n=500), realistic_samples(rng, 1.02e-3, n=500)
        test = compare_samples(old, new)
        # Large samples make even 2% significant; the threshold is what keeps it quiet.
        assert not is_regression(old, new)
        assert test.ratio == pytest.approx(1.02, abs=0.01)


def test_ratio_interval_contains_the_planted_ratio():
    rng = np.random.default_rng(6)
    test = compare_samples(realistic_samples(rng, 1.0, n=200), realistic_samples(rng, 1.5, n=200))
    assert test.ci95[0] < 1.5 < test.ci95[1]
    assert test.p_slower < 1e-6 and test.p_faster > 0.99
