"""Change points: the steps in a series of medians that are both statistically clear and practically large.

``detect_steps`` works on the log of a series' medians (in order, e.g. one per commit): ruptures' PELT
search (``KernelCPD``, linear kernel, i.e. the least-squares cost of a piecewise-constant fit) on the
series scaled by a robust noise estimate (1.4826 * median |first difference| / sqrt 2), with a BIC
penalty of 2 log n per step, proposes steps with at least ``min_segment`` (3) points on each side, so
that one outlier run cannot form a segment whose median moves. A proposed step is kept only when it is
both
  - statistically clear: a pooled two-sample t-test of the log medians of the two segments it
    separates, Bonferroni-adjusted for the n - 2*min_segment + 1 places a step could be put, gives
    p < ``alpha`` (0.01); and
  - practically large: the ratio of the segments' medians is at least ``1 + threshold`` (5%) or at
    most ``1 / (1 + threshold)``.
Failing steps are merged away one at a time, weakest (largest p) first, re-testing the merged segments.
A step reports the position of the first point after it, the ratio after/before of the segments'
medians (> 1 is slower) and both segment sizes (``history_store.query`` puts it at that point's commit:
a change point). A series shorter than 2 * min_segment has no steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import ruptures
from scipy import stats

DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.01
DEFAULT_MIN_SEGMENT = 3
NOISE_FLOOR = 1e-3  # log units; keeps PELT's scaling finite on a series without noise


@dataclass(frozen=True)
class Step:
    index: int  # position in the series of the first point after the step
    ratio: float  # median of the segment after / median of the segment before; > 1 is slower
    before: int  # points in the segment before the step
    after: int  # points in the segment after it
    p_value: float  # Bonferroni-adjusted, of the t-test between the two segments


def _robust_noise(values: np.ndarray) -> float:
    """Standard deviation of the noise, from first differences: a few steps barely move their median."""
    return 1.4826 * float(np.median(np.abs(np.diff(values)))) / math.sqrt(2)


def _t_test(before: np.ndarray, after: np.ndarray) -> float:
    """Two-sided p-value of the pooled two-sample t-test (equal noise on both sides, as on one machine)."""
    freedom = len(before) + len(after) - 2
    pooled = (((before - before.mean()) ** 2).sum() + ((after - after.mean()) ** 2).sum()) / freedom
    difference = after.mean() - before.mean()
    spread = math.sqrt(pooled * (1 / len(before) + 1 / len(after)))
    if spread == 0:
        return 0.0 if difference else 1.0
    return float(2 * stats.t.sf(abs(difference) / spread, freedom))


def detect_steps(
    medians_s: Sequence[float],
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    min_segment: int = DEFAULT_MIN_SEGMENT,
) -> list[Step]:
    """Steps in a series of positive medians (in order), as the module docstring describes."""
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if min_segment < 2:
        raise ValueError(f"min_segment must be >= 2 (a t-test needs two points a side), got {min_segment}")
    values = np.log(np.asarray(medians_s, dtype=float))
    count = len(values)
    if count < 2 * min_segment:
        return []
    scaled = values / max(_robust_noise(values), NOISE_FLOOR)
    # The linear kernel's cost is the least-squares cost; KernelCPD runs PELT on it in C (Pelt(model="l2") is Python).
    search = ruptures.KernelCPD(kernel="linear", min_size=min_segment, jump=1).fit(scaled)
    ends = search.predict(pen=2 * math.log(count))[:-1]
    places = count - 2 * min_segment + 1  # where a step could have been put: the Bonferroni factor
    while ends:
        edges = [0, *ends, count]
        segments = [values[start:end] for start, end in zip(edges, edges[1:])]
        steps = [
            Step(
                index=end,
                ratio=math.exp(np.median(after) - np.median(before)),
                before=len(before),
                after=len(after),
                p_value=min(1.0, places * _t_test(before, after)),
            )
            for end, before, after in zip(ends, segments, segments[1:])
        ]
        failing = [
            index
            for index, step in enumerate(steps)
            if step.p_value >= alpha or abs(math.log(step.ratio)) < math.log1p(threshold)
        ]
        if not failing:
            return steps
        ends.pop(max(failing, key=lambda index: steps[index].p_value))
    return []
