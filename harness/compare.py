"""Compare two runs row by row and decide whether anything regressed.

A row regressed only when the new samples are significantly slower (one-sided
Mann-Whitney U, p < ``alpha``) AND the ratio of medians exceeds ``1 + threshold``:
significance alone flags differences too small to matter, a threshold alone
flags noise. A row whose accuracy check failed in the new run always fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.results import row_key
from harness.stats import compare_samples

DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.01

# Verdicts, and which of them make ``compare`` exit non-zero.
FAILING = ("regression", "accuracy_failed", "error")


@dataclass(frozen=True)
class RowComparison:
    key: tuple[str, str, str, str, str]
    verdict: str  # regression | improvement | unchanged | accuracy_failed | error | new | missing | skipped
    ratio: float | None = None  # new median / old median; > 1 is slower
    ci95: tuple[float, float] | None = None
    p_value: float | None = None  # of the one-sided test in the direction of the change
    old_median_s: float | None = None
    new_median_s: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class Comparison:
    rows: list[RowComparison]
    threshold: float
    alpha: float

    @property
    def failures(self) -> list[RowComparison]:
        return [row for row in self.rows if row.verdict in FAILING]

    @property
    def passed(self) -> bool:
        return not self.failures


def _compare_row(key, old: dict, new: dict, threshold: float, alpha: float) -> RowComparison:
    if new["status"] == "accuracy_failed":
        return RowComparison(key, "accuracy_failed", detail=new["reason"])
    if new["status"] == "error":
        return RowComparison(key, "error", detail=new["reason"])
    if new["status"] == "skipped" or not old["samples_s"]:
        return RowComparison(key, "skipped", detail=new["reason"] or old["reason"])
    test = compare_samples(old["samples_s"], new["samples_s"])
    old_median, new_median = old["stats"]["median_s"], new["stats"]["median_s"]
    common = dict(ratio=test.ratio, ci95=test.ci95, old_median_s=old_median, new_median_s=new_median)
    if test.ratio > 1 + threshold and test.p_slower < alpha:
        return RowComparison(key, "regression", p_value=test.p_slower, **common)
    if test.ratio < 1 / (1 + threshold) and test.p_faster < alpha:
        return RowComparison(key, "improvement", p_value=test.p_faster, **common)
    return RowComparison(key, "unchanged", p_value=min(test.p_slower, test.p_faster), **common)


def compare_runs(old: dict, new: dict, threshold: float = DEFAULT_THRESHOLD,
                 alpha: float = DEFAULT_ALPHA) -> Comparison:
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    old_rows = {row_key(row): row for row in old["rows"]}
    new_rows = {row_key(row): row for row in new["rows"]}
    rows = []
    for key, new_row in new_rows.items():
        if key in old_rows:
            rows.append(_compare_row(key, old_rows[key], new_row, threshold, alpha))
        elif new_row["status"] in ("accuracy_failed", "error"):
            rows.append(RowComparison(key, new_row["status"], detail=new_row["reason"]))
        else:
            rows.append(RowComparison(key, "new", new_median_s=(new_row["stats"] or {}).get("median_s")))
    rows.extend(
        RowComparison(key, "missing", old_median_s=(row["stats"] or {}).get("median_s"))
        for key, row in old_rows.items()
        if key not in new_rows
    )
    return Comparison(rows, threshold, alpha)
