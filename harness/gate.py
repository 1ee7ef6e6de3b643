"""Regression gate for CI: is NEW slower than BASELINE beyond run-to-run noise?

Each side is a list of run records: the replicates of `menagerie run --repeat N`,
a history of runs (one file per commit), or both.

Observations. The unit of evidence is one process. A row's observations are its
replicate medians (``replicate_medians_s``, one per process-level replicate; a
schema-1 record counts as one replicate whose median is ``stats.median_s``), on a
log scale. The samples inside one process are never treated as independent
evidence, because a process-level offset moves them all together.

Whole-run offsets. A process can run every row slower (clocks, thermal state).
With at least ``MIN_ROWS_ACROSS`` comparable rows, each process's offset is
estimated as the median over rows of (log median - row centre), the row centre
being the mean over baseline processes, and removed from that process's rows.
Rows are then compared net of offsets, and the mean offset of NEW minus that of
BASELINE is tested as one more hypothesis, the uniform shift (key
``UNIFORM_KEY``): a slowdown of every row together is caught there, not lost.
With fewer rows nothing is removed (the row spreads then include the offsets)
and no uniform shift is tested.

Row statistic. ratio = exp(d), d = mean log observation of NEW - that of BASELINE
(a ratio of geometric means; > 1 is slower). Its standard error uses the row's
pooled within-side variance; with at least ``MIN_ROWS_ACROSS`` rows the
variances are shrunk towards a prior fitted across rows (Smyth 2004, as in
limma), which adds the prior's degrees of freedom to the t distribution.

Decision. Row threshold T = max(threshold, spread_factor * s), where s is the
row's run-to-run spread (standard deviation of its log observations net of
offsets) in the baseline alone. p_slower is the one-sided t-test p-value of
H0: ratio <= 1 + T; Benjamini-Hochberg at ``fdr`` over the decidable rows picks the
regressions (equivalently: the one-sided lower confidence bound at the BH-adjusted
level exceeds 1 + T). The uniform shift is one hypothesis declared in advance: it is
tested at level ``fdr`` on its own, outside the rows' family (its q is its p).
Improvements are the mirror image (H0: ratio >= 1 / (1 + T), their own BH) and never
fail. ``ci`` is a descriptive two-sided 95% interval of the ratio. threshold, spread_factor and
max_undetectable may be set per benchmark by globs on its name (``per_benchmark``, read by
``harness/gate_config.py``); each row records the values it got, and the uniform shift uses the defaults.

Power. For every decided row and the uniform shift, ``detectable`` is the smallest
slowdown the gate would flag with probability ``POWER`` (80%) at its observation
counts, spread and level: log(1 + detectable) = log(1 + T) + (t_{1-a} + t_{POWER}) * se,
with t quantiles at the test's degrees of freedom and a = fdr for the uniform shift,
fdr / m for a row (BH's level for one changed row among m). A row or shift that is not
a regression and whose detectable slowdown exceeds ``max_undetectable`` (10%, or the row's own,
see Decision) is ``underpowered``: the gate could not have seen a slowdown of that size there.
``replicates_needed`` is then the number of processes per side that would bring it
under the limit (None when the threshold alone exceeds it).

Fail closed. Verdicts that fail the gate: regression; undecided (fewer than
``MIN_REPLICATES`` observations on a side, so no spread can be estimated, or a row
``throttled`` in NEW: timed partly while the GPU slowed down);
underpowered;
error, accuracy_failed, wrong-after-timing and mutates-inputs in NEW (always); missing from NEW and newly_skipped
(unless allow_missing); params_changed (the same key with different params in any
record) and missing_dtype (a baseline row of a dtype that NEW did not run at
all) (unless allow_mismatch). Record findings that fail unless allow_mismatch:
device (provenance.device), timer (config.timer), size (config.size) or the set
of row dtypes differing among the records. Rows only in NEW are "new"; rows
skipped on both sides are "skipped"; neither fails.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from menagerie.harness.gate_config import RowSettings, Rule, resolve
from menagerie.harness.results import FAILED_STATUSES, MEASURED_STATUSES, STATUS_RANK, row_key

DEFAULT_THRESHOLD = 0.02
DEFAULT_K = 0.5
DEFAULT_FDR = 0.05
DEFAULT_MAX_UNDETECTABLE = 0.10
POWER = 0.80
MAX_REPLICATES_SUGGESTED = 1000
MIN_REPLICATES = 2  # per side: one observation gives no spread
MIN_ROWS_ACROSS = 10  # rows needed to estimate whole-run offsets and a variance prior across rows
CI_LEVEL = 0.95
UNIFORM_KEY = ("*", "*", "*", "*", "*")

FAILING_ALWAYS = ("regression", "undecided", "underpowered", *FAILED_STATUSES)
FAILING_UNLESS_ALLOW_MISSING = ("missing", "newly_skipped")
FAILING_UNLESS_ALLOW_MISMATCH = ("params_changed", "missing_dtype")


@dataclass(frozen=True)
class RowResult:
    key: tuple[str, str, str, str, str]
    verdict: str  # regression | improvement | unchanged | undecided | underpowered | a failed status | ...
    #               | missing | missing_dtype | newly_skipped | params_changed | skipped | new
    failing: bool
    ratio: float | None = None  # new / baseline geometric mean, net of whole-run offsets; > 1 is slower
    ci: tuple[float, float] | None = None  # two-sided 95% interval of ratio
    raw_ratio: float | None = None  # the same without removing whole-run offsets
    p_value: float | None = None  # one-sided, in the direction of the change, against the row threshold
    q_value: float | None = None  # Benjamini-Hochberg adjusted p_value
    baseline_s: float | None = None  # geometric mean of the baseline observations, seconds
    new_s: float | None = None  # the same for NEW
    threshold: float | None = None  # row threshold T: regression means ratio > 1 + T
    spread: float | None = None  # baseline run-to-run spread (sd of log observations)
    spread_factor: float | None = None  # the row's own settings, as applied (per benchmark or the defaults)
    max_undetectable: float | None = None
    n_baseline: int = 0  # observations (process-level replicates)
    n_new: int = 0
    detectable: float | None = None  # smallest slowdown flagged with 80% power (0.1: 10%)
    replicates_needed: int | None = None  # per side, to bring ``detectable`` under the limit (underpowered only)
    detail: str = ""


@dataclass(frozen=True)
class Finding:
    kind: str  # device_mismatch | timer_mismatch | size_mismatch | dtype_mismatch
    failing: bool
    detail: str


@dataclass(frozen=True)
class GateResult:
    rows: list[RowResult]
    uniform: RowResult | None  # the uniform shift of whole runs; None when offsets were not estimated
    findings: list[Finding]
    threshold: float
    spread_factor: float
    fdr: float
    max_undetectable: float = DEFAULT_MAX_UNDETECTABLE

    @property
    def all_rows(self) -> list[RowResult]:
        """The uniform shift (when tested) first, then the rows."""
        return ([self.uniform] if self.uniform else []) + self.rows

    @property
    def failures(self) -> list[RowResult]:
        return [row for row in self.all_rows if row.failing]

    @property
    def reasons(self) -> list[str]:
        return [f"{finding.kind}: {finding.detail}" for finding in self.findings if finding.failing] + [
            f"{'/'.join(row.key)}: {row.verdict}: {row.detail}" for row in self.failures
        ]

    @property
    def passed(self) -> bool:
        return not self.reasons


def _observations(record: dict, row: dict) -> list[float]:
    if record.get("schema_version", 1) >= 2:
        values = row["replicate_medians_s"]
    else:
        values = [row["stats"]["median_s"]] if row["stats"] else []
    if not all(isinstance(value, (int, float)) and math.isfinite(value) and value > 0 for value in values):
        raise ValueError(f"{'/'.join(row_key(row))}: replicate medians must be positive seconds, got {values}")
    return [math.log(value) for value in values]


def _side_matrix(records: list[dict], keys: list[tuple]) -> np.ndarray:
    """Log observations, rows by processes (NaN where a process has none for a row); processes
    with no observation of any of these rows are left out."""
    index = {key: i for i, key in enumerate(keys)}
    columns = []
    for record in records:
        observed = {
            row_key(row): _observations(record, row)
            for row in record["rows"]
            if row["status"] in MEASURED_STATUSES and row_key(row) in index
        }
        for replicate in range(max((len(values) for values in observed.values()), default=0)):
            column = np.full(len(keys), np.nan)
            for key, values in observed.items():
                if replicate < len(values):
                    column[index[key]] = values[replicate]
            columns.append(column)
    return np.stack(columns, axis=1) if columns else np.empty((len(keys), 0))


def _column_medians(matrix: np.ndarray) -> np.ndarray:
    """Median of each column's observations; 0 (no offset known) for a column without any."""
    return np.array([np.median(column[~np.isnan(column)]) if np.any(~np.isnan(column)) else 0.0 for column in matrix.T])


def _moments(old: np.ndarray, fresh: np.ndarray):
    """Per row of two NaN-padded matrices: mean difference (fresh - old), counts, the baseline's
    standard deviation, and the pooled variance with its degrees of freedom (NaN where undefined)."""
    n_old, n_new = np.sum(~np.isnan(old), axis=1), np.sum(~np.isnan(fresh), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_old, mean_new = np.nansum(old, axis=1) / n_old, np.nansum(fresh, axis=1) / n_new
        squares_old = np.nansum((old - mean_old[:, None]) ** 2, axis=1)
        squares_new = np.nansum((fresh - mean_new[:, None]) ** 2, axis=1)
        df = (n_old + n_new - 2).astype(float)
        spread = np.sqrt(squares_old / (n_old - 1))
        variance = (squares_old + squares_new) / df
    return mean_new - mean_old, n_old, n_new, spread, variance, df


def _moderated(variance: np.ndarray, df: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical-Bayes variances (Smyth 2004): each shrunk towards a scaled inverse chi-square prior
    fitted across rows by the moments of log variance; returns posterior variances and their df."""
    z = np.log(variance) - special.digamma(df / 2) + np.log(df / 2)
    excess = np.var(z, ddof=1) - np.mean(special.polygamma(1, df / 2))
    half_df_max = 1e6  # rows vary no more than sampling explains: in effect one common variance
    if excess > special.polygamma(1, half_df_max):
        half_prior_df = optimize.brentq(lambda x: special.polygamma(1, x) - excess, 1e-8, half_df_max)
    else:
        half_prior_df = half_df_max
    prior = np.exp(np.mean(z) + special.digamma(half_prior_df) - np.log(half_prior_df))
    prior_df = 2 * half_prior_df
    return (prior_df * prior + df * variance) / (prior_df + df), df + prior_df


def _benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (q-values); scipy's false_discovery_control needs scipy >= 1.11."""
    order = np.argsort(p)
    scaled = p[order] * p.size / np.arange(1, p.size + 1)
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return adjusted


def _record_findings(baseline, new, allow_mismatch) -> list[Finding]:
    findings = []
    fields = {
        "device": lambda r: r["provenance"].get("device"),
        "timer": lambda r: r["config"].get("timer"),
        "size": lambda r: r["config"].get("size"),
    }
    for name, read in fields.items():
        old, fresh = {read(r) for r in baseline}, {read(r) for r in new}
        if len(old | fresh) > 1:
            findings.append(
                Finding(
                    f"{name}_mismatch",
                    not allow_mismatch,
                    f"baseline has {sorted(old, key=str)}, new has {sorted(fresh, key=str)}",
                )
            )
    old, fresh = _dtypes(baseline), _dtypes(new)
    if old != fresh:
        findings.append(
            Finding(
                "dtype_mismatch", not allow_mismatch, f"baseline rows have {sorted(old)}, new rows have {sorted(fresh)}"
            )
        )
    return findings


def _dtypes(records) -> set[str]:
    return {row["dtype"] for record in records for row in record["rows"]}


def _rows_by_key(records: list[dict]) -> dict[tuple, list[dict]]:
    rows = {}
    for record in records:
        for row in record["rows"]:
            rows.setdefault(row_key(row), []).append(row)
    return rows


def _classify(olds: list[dict], news: list[dict], dtype: str, new_dtypes: set[str]) -> tuple[str, str] | None:
    """(verdict, detail) of a row that cannot be compared statistically; None for one that can."""
    if not news:
        if dtype in new_dtypes:
            return "missing", "in baseline, absent from new"
        return "missing_dtype", f"in baseline, absent from new, which ran no {dtype} rows"
    status = max((row["status"] for row in news), key=STATUS_RANK.__getitem__)
    reason = next(row["reason"] for row in news if row["status"] == status)
    if status in FAILED_STATUSES:
        return status, reason
    if status == "throttled":  # timed partly while the GPU slowed down: no verdict on its speed
        return "undecided", f"throttled in new: {reason}"
    if not olds:
        return "new", f"only in new ({status})"
    params = sorted({repr(sorted(row["params"].items())) for row in olds + news})
    if len(params) > 1:
        return "params_changed", f"params differ between records: {', '.join(params)}"
    measured = any(row["status"] in MEASURED_STATUSES for row in olds)
    if status == "skipped":
        return ("newly_skipped" if measured else "skipped"), f"skipped in new: {reason}"
    if not measured:
        return "new", "not measured in baseline"
    return None


def gate(
    baseline: list[dict],
    new: list[dict],
    threshold: float = DEFAULT_THRESHOLD,
    spread_factor: float = DEFAULT_K,
    fdr: float = DEFAULT_FDR,
    allow_missing: bool = False,
    allow_mismatch: bool = False,
    max_undetectable: float = DEFAULT_MAX_UNDETECTABLE,
    per_benchmark: Sequence[Rule] = (),
) -> GateResult:
    """Compares the run records of NEW with those of BASELINE; see the module docstring. threshold, spread_factor
    and max_undetectable are the defaults; ``per_benchmark`` overrides them for the rows its globs match."""
    if not baseline or not new:
        raise ValueError("baseline and new must each hold at least one run record")
    if threshold < 0 or spread_factor < 0:
        raise ValueError(f"threshold and spread_factor must be >= 0, got {threshold} and {spread_factor}")
    if not 0 < fdr < 1:
        raise ValueError(f"fdr must be in (0, 1), got {fdr}")
    if not max_undetectable > 0:
        raise ValueError(f"max_undetectable must be > 0, got {max_undetectable}")

    failing_flags = {
        **dict.fromkeys(FAILING_ALWAYS, True),
        **dict.fromkeys(FAILING_UNLESS_ALLOW_MISSING, not allow_missing),
        **dict.fromkeys(FAILING_UNLESS_ALLOW_MISMATCH, not allow_mismatch),
    }

    def result(key, verdict, **fields):
        return RowResult(key, verdict, failing_flags.get(verdict, False), **fields)

    old_rows, new_rows = _rows_by_key(baseline), _rows_by_key(new)
    new_dtypes = _dtypes(new)
    verdicts, comparable = {}, []
    for key in sorted(old_rows.keys() | new_rows.keys()):
        classified = _classify(old_rows.get(key, []), new_rows.get(key, []), key[3], new_dtypes)
        if classified is None:
            comparable.append(key)
        else:
            verdicts[key] = result(key, classified[0], detail=classified[1])

    defaults = RowSettings(threshold, spread_factor, max_undetectable)
    settings = [resolve(per_benchmark, key[0], defaults) for key in comparable]
    compared, uniform = _compare(baseline, new, comparable, settings, defaults, fdr, result)
    verdicts.update(compared)
    rows = [verdicts[key] for key in sorted(verdicts)]
    return GateResult(
        rows, uniform, _record_findings(baseline, new, allow_mismatch), threshold, spread_factor, fdr, max_undetectable
    )


def _detectable(limit, variance, n_old, n_new, df, level):
    """The slowdown flagged with probability POWER by a one-sided t-test at ``level`` (see the module
    docstring); element-wise over arrays."""
    se = np.sqrt(variance * (1 / n_old + 1 / n_new))
    return np.expm1(limit + (stats.t.ppf(1 - level, df) + stats.t.ppf(POWER, df)) * se)


def _replicates_needed(
    limit: float, variance: float, df: float, n_old: float, n_new: float, level: float, max_undetectable: float
) -> int | None:
    """Processes per side that bring the detectable slowdown under ``max_undetectable``; None if none can."""
    if math.expm1(limit) >= max_undetectable:
        return None  # the threshold alone is over the limit
    n, quantiles = _quantiles_by_replicates(float(df - (n_old + n_new - 2)), float(level))
    enough = np.expm1(limit + quantiles * np.sqrt(variance * 2 / n)) <= max_undetectable
    return int(n[np.argmax(enough)]) if enough.any() else None


@functools.cache
def _quantiles_by_replicates(prior_df: float, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Per count n of processes per side: n, and t_{1-level} + t_{POWER} at the test's degrees of freedom
    (2n - 2 plus the variance prior's); rows of one comparison share them."""
    n = np.arange(MIN_REPLICATES, MAX_REPLICATES_SUGGESTED + 1)
    df = 2 * n - 2 + prior_df
    return n, stats.t.ppf(1 - level, df) + stats.t.ppf(POWER, df)


def _compare(baseline, new, keys, settings, defaults, fdr, result):
    """Statistical verdicts for the comparable rows, each under its ``settings`` (a RowSettings per key), and the
    uniform shift under ``defaults`` (None without offsets)."""
    if not keys:
        return {}, None
    old, fresh = _side_matrix(baseline, keys), _side_matrix(new, keys)
    raw_d, n_old, n_new = _moments(old, fresh)[:3]
    with np.errstate(invalid="ignore", divide="ignore"):
        levels = {
            "baseline_s": np.exp(np.nansum(old, axis=1) / n_old),
            "new_s": np.exp(np.nansum(fresh, axis=1) / n_new),
        }
    decidable = (n_old >= MIN_REPLICATES) & (n_new >= MIN_REPLICATES)
    across = np.sum(decidable) >= MIN_ROWS_ACROSS
    if across:
        centre = np.nanmean(old[decidable], axis=1)[:, None]  # a median would tie at 0 with odd counts
        old_offsets = _column_medians(old[decidable] - centre)
        new_offsets = _column_medians(fresh[decidable] - centre)
        old, fresh = old - old_offsets, fresh - new_offsets
    d, n_old, n_new, spread, variance, df = _moments(old, fresh)
    if across:
        positive = decidable & (variance > 0)
        if np.sum(positive) >= MIN_ROWS_ACROSS:
            variance[positive], df[positive] = _moderated(variance[positive], df[positive])
        # The uniform shift joins as one more entry, whose observations are the processes' offsets.
        shift = _moments(old_offsets[None, :], new_offsets[None, :])
        d, n_old, n_new, spread, variance, df = (
            np.append(rows, one) for rows, one in zip((d, n_old, n_new, spread, variance, df), shift)
        )
        keys, raw_d, settings = keys + [UNIFORM_KEY], np.append(raw_d, shift[0]), settings + [defaults]
        decidable = (n_old >= MIN_REPLICATES) & (n_new >= MIN_REPLICATES)
    threshold = np.array([each.threshold for each in settings], float)
    spread_factor = np.array([each.spread_factor for each in settings], float)
    row_threshold = np.maximum(threshold, spread_factor * np.nan_to_num(spread))
    limit = np.log1p(row_threshold)
    p_slower, p_faster, q_slower, q_faster, half_width, detectable = (np.ones(len(keys)) for _ in range(6))
    if np.any(decidable):
        t = decidable
        se = np.sqrt(variance[t] * (1 / n_old[t] + 1 / n_new[t]))
        safe_se = np.where(se > 0, se, 1.0)  # zero spread: the p-value is 0 or 1
        p_slower[t] = np.where(se > 0, stats.t.sf((d[t] - limit[t]) / safe_se, df[t]), d[t] <= limit[t])
        p_faster[t] = np.where(se > 0, stats.t.cdf((d[t] + limit[t]) / safe_se, df[t]), d[t] >= -limit[t])
        # BH over the rows only: the uniform shift, declared in advance, is tested at its own level (q = p).
        rows = t & np.array([key != UNIFORM_KEY for key in keys])
        q_slower[t], q_faster[t] = p_slower[t], p_faster[t]
        if np.any(rows):
            q_slower[rows], q_faster[rows] = _benjamini_hochberg(p_slower[rows]), _benjamini_hochberg(p_faster[rows])
        half_width[t] = stats.t.ppf(0.5 + CI_LEVEL / 2, df[t]) * se
        # Power: the uniform shift at its own level, each row at BH's level for one changed row among them.
        level = np.where([key == UNIFORM_KEY for key in keys], fdr, fdr / max(int(np.sum(rows)), 1))
        detectable[t] = _detectable(limit[t], variance[t], n_old[t], n_new[t], df[t], level[t])

    compared = {}
    for i, key in enumerate(keys):
        counts = dict(n_baseline=int(n_old[i]), n_new=int(n_new[i]))
        ratio = dict(ratio=float(np.exp(d[i])), raw_ratio=float(np.exp(raw_d[i])))
        if key != UNIFORM_KEY:
            ratio.update({name: float(level[i]) for name, level in levels.items()})
        if not decidable[i]:
            ratio = {name: value if math.isfinite(value) else None for name, value in ratio.items()}
            compared[key] = result(
                key,
                "undecided",
                **counts,
                **ratio,
                detail=(
                    f"{n_old[i]} baseline and {n_new[i]} new observations; at least {MIN_REPLICATES} on each "
                    "side are needed to estimate the run-to-run spread"
                ),
            )
            continue
        verdict = "regression" if q_slower[i] <= fdr else "improvement" if q_faster[i] <= fdr else "unchanged"
        p, q = (p_slower[i], q_slower[i]) if d[i] >= 0 else (p_faster[i], q_faster[i])
        ci = (float(np.exp(d[i] - half_width[i])), float(np.exp(d[i] + half_width[i])))
        needed, max_undetectable = None, settings[i].max_undetectable
        if verdict == "unchanged" and detectable[i] > max_undetectable:
            verdict = "underpowered"
            needed = _replicates_needed(limit[i], variance[i], df[i], n_old[i], n_new[i], level[i], max_undetectable)
        power = f", detectable slowdown {detectable[i]:.1%} (80% power)" + (
            ""
            if verdict != "underpowered"
            else f" over the {max_undetectable:.0%} limit: "
            + (
                f"{needed} replicates per side would bring it under"
                if needed
                else "no replicate count brings it under (the row threshold alone is over the limit)"
            )
        )
        compared[key] = result(
            key,
            verdict,
            **counts,
            **ratio,
            ci=ci,
            p_value=float(p),
            q_value=float(q),
            threshold=float(row_threshold[i]),
            spread=float(spread[i]),
            spread_factor=float(settings[i].spread_factor),
            max_undetectable=float(max_undetectable),
            detectable=float(detectable[i]),
            replicates_needed=needed,
            detail=(
                f"ratio {ratio['ratio']:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}"
                f"{', net of whole-run offsets' if across and key != UNIFORM_KEY else ''}), "
                f"threshold {row_threshold[i]:.1%} (baseline spread {spread[i]:.1%}), "
                f"{n_old[i]} vs {n_new[i]} observations, p={p:.2g} q={q:.2g}{power}"
            ),
        )
    return compared, compared.pop(UNIFORM_KEY, None)
