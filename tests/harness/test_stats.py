import numpy as np
import pytest

from menagerie.harness.stats import bootstrap_median_ci, summarize, summarize_replicates


def realistic_samples(rng, median_s, n=60):
    """Timing-like noise: a floor, ~3% log-normal jitter and a 5% tail of slow outliers."""
    samples = median_s * rng.lognormal(mean=0.0, sigma=0.03, size=n)
    outliers = rng.random(n) < 0.05
    samples[outliers] *= rng.uniform(1.2, 2.0, size=outliers.sum())
    return samples


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


def test_replicates_are_summarized_across_processes():
    rng = np.random.default_rng(2)
    # Three processes whose levels differ by a process-level offset far beyond the within-process jitter.
    replicates = [realistic_samples(rng, level, n=200) for level in (1.00e-3, 1.04e-3, 0.97e-3)]
    summary = summarize_replicates(replicates)
    medians = [np.median(samples) for samples in replicates]
    assert summary["replicates"] == 3 and summary["n"] == 600 and summary["ci95_from"] == "replicates"
    assert summary["median_s"] == pytest.approx(np.exp(np.mean(np.log(medians))))
    low, high = summary["ci95_s"]
    # The interval reflects the spread between processes: it covers the replicate medians' range
    # at 3 replicates, where a bootstrap of the pooled samples would be far narrower.
    assert low < min(medians) and high > max(medians)
    pooled_low, pooled_high = bootstrap_median_ci(np.concatenate(replicates))
    assert pooled_high - pooled_low < (high - low) / 3


def test_one_replicate_keeps_the_sample_bootstrap():
    rng = np.random.default_rng(3)
    samples = realistic_samples(rng, 1e-3)
    summary = summarize_replicates([samples])
    assert summary["ci95_from"] == "samples" and summary["replicates"] == 1
    assert summary["median_s"] == pytest.approx(np.median(samples))
    assert summary["ci95_s"] == list(bootstrap_median_ci(samples))
    with pytest.raises(ValueError, match="at least one replicate"):
        summarize_replicates([])
