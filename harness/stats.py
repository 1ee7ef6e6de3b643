"""Statistics over timing samples: summaries and bootstrap intervals.

Timing samples are skewed (a floor plus a tail of interruptions), so the suite
reports medians with bootstrap confidence intervals, never means. Whether one run
is slower than another is the regression gate's question (``menagerie.harness.gate``).

The samples of one process are not independent evidence about the code: a
process-level offset (clocks, placement, what else the machine runs) moves them all
together. So a row measured in several process-level replicates is summarized
across replicates (``summarize_replicates``): its median is the geometric mean of
the replicate medians, and its 95% interval a t interval over their logs; only a
one-replicate row falls back to the bootstrap interval of its samples' median.
"""

from __future__ import annotations

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


def summarize_replicates(samples_by_replicate: list) -> dict:
    """``summarize`` of the pooled samples, with the median and its 95% interval taken across
    replicates when there are several (see the module docstring); ``replicates`` counts them,
    ``ci95_from`` says which interval it is, and ``noise`` is its half-width over the median."""
    if not samples_by_replicate:
        raise ValueError("need at least one replicate's samples")
    pooled = summarize(np.concatenate([_as_array(samples) for samples in samples_by_replicate]))
    logs = np.log([np.median(_as_array(samples)) for samples in samples_by_replicate])
    pooled["replicates"] = int(logs.size)
    if logs.size == 1:
        pooled.update(
            median_s=float(np.exp(logs[0])),
            ci95_s=list(bootstrap_median_ci(samples_by_replicate[0])),
            ci95_from="samples",
        )
    else:
        half_width = scipy_stats.t.ppf(0.975, logs.size - 1) * logs.std(ddof=1) / np.sqrt(logs.size)
        centre = logs.mean()
        pooled.update(
            median_s=float(np.exp(centre)),
            ci95_s=[float(np.exp(centre - half_width)), float(np.exp(centre + half_width))],
            ci95_from="replicates",
        )
    low, high = pooled["ci95_s"]
    pooled["noise"] = (high - low) / 2 / pooled["median_s"] if pooled["median_s"] > 0 else None
    return pooled
