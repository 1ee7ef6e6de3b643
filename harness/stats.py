"""Statistics over timing samples: summaries, bootstrap intervals, a slowdown test.

Timing samples are skewed (a floor plus a tail of interruptions), so the suite
reports medians with bootstrap confidence intervals and tests differences with
the rank-based Mann-Whitney U test, never with means and t-tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

BOOTSTRAP_RESAMPLES = 2000


def _as_array(samples) -> np.ndarray:
    values = np.asarray(samples, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"samples must be a non-empty 1-D sequence, got shape {values.shape}")
    return values


def bootstrap_median_ci(samples, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the median."""
    values = _as_array(samples)
    rng = np.random.default_rng(seed)
    resampled = rng.choice(values, size=(BOOTSTRAP_RESAMPLES, values.size), replace=True)
    medians = np.median(resampled, axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(medians, [tail, 100.0 - tail])
    return float(low), float(high)


def summarize(samples) -> dict:
    """Median, IQR, bootstrap 95% CI of the median, mean, min, max and count."""
    values = _as_array(samples)
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    return {
        "n": int(values.size),
        "median_s": float(median),
        "q25_s": float(q25),
        "q75_s": float(q75),
        "iqr_s": float(q75 - q25),
        "ci95_s": list(bootstrap_median_ci(values)),
        "mean_s": float(values.mean()),
        "min_s": float(values.min()),
        "max_s": float(values.max()),
    }


@dataclass(frozen=True)
class RatioTest:
    """How ``new`` compares with ``old``: ratio of medians (>1 is slower) and tests."""

    ratio: float
    ci95: tuple[float, float]
    p_slower: float  # one-sided Mann-Whitney U: new is stochastically larger (slower)
    p_faster: float  # one-sided Mann-Whitney U: new is stochastically smaller (faster)


def compare_samples(old, new, level: float = 0.95, seed: int = 0) -> RatioTest:
    """Ratio of medians new/old with a bootstrap CI, and one-sided rank tests both ways."""
    old_values, new_values = _as_array(old), _as_array(new)
    rng = np.random.default_rng(seed)
    old_medians = np.median(
        rng.choice(old_values, size=(BOOTSTRAP_RESAMPLES, old_values.size), replace=True), axis=1
    )
    new_medians = np.median(
        rng.choice(new_values, size=(BOOTSTRAP_RESAMPLES, new_values.size), replace=True), axis=1
    )
    ratios = new_medians / old_medians
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(ratios, [tail, 100.0 - tail])
    if np.array_equal(np.sort(old_values), np.sort(new_values)):
        # Identical sample sets carry no evidence of a difference; scipy would still
        # return p=0.5, which is right, but skip the work and avoid tie warnings.
        p_slower = p_faster = 1.0
    else:
        p_slower = scipy_stats.mannwhitneyu(new_values, old_values, alternative="greater").pvalue
        p_faster = scipy_stats.mannwhitneyu(new_values, old_values, alternative="less").pvalue
    return RatioTest(
        ratio=float(np.median(new_values) / np.median(old_values)),
        ci95=(float(low), float(high)),
        p_slower=float(p_slower),
        p_faster=float(p_faster),
    )
