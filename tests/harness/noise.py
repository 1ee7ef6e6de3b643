"""Synthetic run records (schema 2) with GPU-like run-to-run noise, for testing the regression gate.

The noise, on a log scale, for row r in process (replicate) j:
- each sample: lognormal jitter (``sample_sigma``, 3%) and, for ``outlier_fraction`` (2%) of the
  samples, a slowdown by a factor drawn from ``outlier_factor`` (1.5-3x);
- each row, each process: an offset drawn from N(0, spread_r), where the row's run-to-run spread
  spread_r is drawn once per suite, uniformly in ``row_spread`` (1-3%);
- each process: one whole-run offset shared by all its rows, drawn from N(0, ``run_spread``) (1.5%).
Every replicate is its own process. Planted slowdowns multiply a row's times (``slowdowns``, by
row index) or every row's (``uniform_slowdown``). Deterministic given the seeds.

Measure the gate's false-alarm rate and power under this noise:
    .venv/bin/python -m tests.harness.noise --trials 1000
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import numpy as np

DEVICE = "NVIDIA H200"


@dataclass(frozen=True)
class Suite:
    """The true properties of a suite of rows: the code and machine being measured."""

    rows: int = 100
    seed: int = 0
    sample_sigma: float = 0.03
    outlier_fraction: float = 0.02
    outlier_factor: tuple[float, float] = (1.5, 3.0)
    row_spread: tuple[float, float] = (0.01, 0.03)
    run_spread: float = 0.015
    medians_s: np.ndarray = field(init=False, repr=False)
    spreads: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        rng = np.random.default_rng([self.seed, 0])
        object.__setattr__(self, "medians_s", 10 ** rng.uniform(-5, -2, self.rows))
        object.__setattr__(self, "spreads", rng.uniform(*self.row_spread, self.rows))

    def runs(
        self,
        count: int,
        replicates: int = 1,
        samples: int = 500,
        seed: int = 0,
        slowdowns: dict[int, float] | None = None,
        uniform_slowdown: float = 0.0,
        keep_samples: bool = True,
    ) -> list[dict]:
        """``count`` run records of ``replicates`` processes each, ``samples`` samples per replicate (kept in the
        records' ``samples_s`` unless ``keep_samples`` is False: the gate reads only the replicate medians)."""
        rng = np.random.default_rng([self.seed, 1, seed])
        factor = np.full(self.rows, 1.0 + uniform_slowdown)
        for row, slowdown in (slowdowns or {}).items():
            factor[row] *= 1.0 + slowdown
        return [self._run(rng, replicates, samples, factor, index, keep_samples) for index in range(count)]

    def _run(self, rng, replicates, samples, factor, index, keep_samples=True) -> dict:
        shape = (self.rows, replicates, samples)
        level = (
            np.log(self.medians_s * factor)[:, None]
            + rng.normal(0.0, 1.0, (self.rows, replicates)) * self.spreads[:, None]
            + rng.normal(0.0, self.run_spread, replicates)[None, :]
        )
        times = np.exp(level[:, :, None] + rng.normal(0.0, self.sample_sigma, shape))
        outliers = rng.random(shape) < self.outlier_fraction
        times[outliers] *= rng.uniform(*self.outlier_factor, outliers.sum())
        medians, overall = np.median(times, axis=2), np.median(times.reshape(self.rows, -1), axis=1)
        rows = [
            synthetic_row(i, times[i].ravel().tolist() if keep_samples else [], medians[i].tolist(), float(overall[i]))
            for i in range(self.rows)
        ]
        return record(rows, timestamp=f"2026-12-01T10:{index // 60:02d}:{index % 60:02d}+00:00", repeat=replicates)


def planted_comparison() -> tuple[list[dict], list[dict]]:
    """A 300-row comparison for the gate's views: BASELINE three one-replicate runs, NEW one run of three
    replicates with rows 0-4 30% slower and rows 10 and 11 30% faster."""
    suite = Suite(rows=300, seed=3)
    baseline = suite.runs(3, replicates=1, samples=50, seed=0)
    new = suite.runs(
        1, replicates=3, samples=50, seed=1, slowdowns={**dict.fromkeys(range(5), 0.3), 10: -0.3, 11: -0.3}
    )
    return baseline, new


def synthetic_row(index: int, samples: list[float], replicate_medians: list[float], median_s: float) -> dict:
    return {
        "benchmark": "synthetic.op",
        "case": f"row{index:03d}",
        "params": {"index": index},
        "impl": "triton",
        "role": "variant",
        "note": "",
        "dtype": "float32",
        "mode": "fwd",
        "status": "ok",
        "reason": "",
        "samples_s": samples,
        "replicate_medians_s": replicate_medians,
        "stats": {"n": len(samples), "median_s": median_s},
        "accuracy": None,
    }


def record(rows: list[dict], timestamp: str, repeat: int) -> dict:
    return {
        "schema_version": 2,
        "provenance": {"device": DEVICE, "git": {"sha": "0" * 40, "dirty": False}, "timestamp": timestamp},
        "config": {
            "size": "small",
            "timer": "events",
            "repeat": repeat,
            "dtypes": sorted({row["dtype"] for row in rows}),
        },
        "rows": rows,
    }


def trial(
    seed: int,
    slowdowns=(0.0,),
    uniform_slowdowns=(),
    history: int = 10,
    replicates: int = 3,
    samples: int = 500,
    planted: int = 3,
    **gate_options,
) -> dict:
    """One trial on a fresh suite: BASELINE ``history`` one-replicate runs, NEW one run of
    ``replicates`` replicates with rows 0..planted-1 slower by each of ``slowdowns`` (0: A/A), or
    every row slower by each of ``uniform_slowdowns``; the gate's result per slowdown (keyed
    ("uniform", slowdown) for the latter)."""
    from menagerie.harness.gate import gate

    suite = Suite(seed=seed)
    baseline = suite.runs(history, samples=samples, seed=0)

    def compare(**planted_slowdown):
        new = suite.runs(1, replicates=replicates, samples=samples, seed=1, **planted_slowdown)
        return gate(baseline, new, **gate_options)

    results = {slowdown: compare(slowdowns=dict.fromkeys(range(planted), slowdown)) for slowdown in slowdowns}
    results.update({("uniform", slowdown): compare(uniform_slowdown=slowdown) for slowdown in uniform_slowdowns})
    return results


def regressions(result) -> set[int]:
    return {int(row.key[1][3:]) for row in result.rows if row.verdict == "regression"}


def measure(
    trials: int, slowdowns=(0.05, 0.07, 0.10), uniform_slowdowns=(0.03, 0.05, 0.10), planted: int = 3, **options
) -> dict:
    """The A/A false-alarm rate and the power of the gate over ``trials`` trials (seeds 0, 1, ...)."""
    outcomes = [
        trial(seed, (0.0,) + tuple(slowdowns), uniform_slowdowns, planted=planted, **options) for seed in range(trials)
    ]
    aa = [outcome[0.0] for outcome in outcomes]
    row_count = len(aa[0].rows)
    report = {
        "aa_comparisons_failed": sum(not result.passed for result in aa) / trials,
        "aa_false_regressions_per_row": sum(len(regressions(result)) for result in aa) / (trials * row_count),
        "aa_uniform_regressions": sum(result.uniform.verdict == "regression" for result in aa) / trials,
    }
    for slowdown in slowdowns:
        found = [regressions(outcome[slowdown]) for outcome in outcomes]
        hits = [len(rows & set(range(planted))) for rows in found]
        report[f"slowdown {slowdown:.0%} of {planted} rows"] = {
            "trials_with_a_planted_row_flagged": sum(hit > 0 for hit in hits) / trials,
            "planted_rows_flagged": sum(hits) / (trials * planted),
            "trials_with_all_planted_flagged": sum(hit == planted for hit in hits) / trials,
            "false_regressions_per_trial": sum(len(rows) - hit for rows, hit in zip(found, hits)) / trials,
        }
    for slowdown in uniform_slowdowns:
        results = [outcome["uniform", slowdown] for outcome in outcomes]
        report[f"uniform slowdown {slowdown:.0%}"] = {
            "trials_with_uniform_regression": sum(r.uniform.verdict == "regression" for r in results) / trials,
            "row_regressions_per_trial": sum(len(regressions(r)) for r in results) / trials,
        }
    return report


def issue_study(trials: int = 100, rows: int = 300, replicates: int = 5, samples: int = 200) -> dict[str, float]:
    """The gate's rates on the issue's synthetic study, over ``trials`` seeded suites of ``rows`` rows with 2% row
    noise and 2% whole-process offsets, ``replicates`` processes per side: the share of trials in which
    a uniform 10% slowdown fails the gate as a uniform regression, A/A comparisons fail the gate, and a 10% slowdown
    of row 0 alone is flagged as a regression of that row; and at 2 vs 2 processes, the share in which a uniform
    20% slowdown passes."""
    from menagerie.harness.gate import gate

    caught_uniform = aa_failed = caught_row = passed_two = 0
    for seed in range(trials):
        suite = Suite(rows=rows, seed=seed, row_spread=(0.02, 0.02), run_spread=0.02)

        def runs(count=replicates, suite=suite, **planted):
            return suite.runs(1, replicates=count, samples=samples, keep_samples=False, **planted)

        baseline = runs(seed=0)
        uniform = gate(baseline, runs(seed=1, uniform_slowdown=0.10))
        caught_uniform += uniform.uniform.verdict == "regression" and not uniform.passed
        aa_failed += not gate(baseline, runs(seed=2)).passed
        caught_row += 0 in regressions(gate(baseline, runs(seed=3, slowdowns={0: 0.10})))
        passed_two += gate(runs(2, seed=4), runs(2, seed=5, uniform_slowdown=0.20)).passed
    return {
        "uniform 10% slowdown caught (5 vs 5)": caught_uniform / trials,
        "A/A comparisons failed (5 vs 5)": aa_failed / trials,
        "single-row 10% slowdown caught among 300 (5 vs 5)": caught_row / trials,
        "uniform 20% slowdown passed (2 vs 2)": passed_two / trials,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--threshold", type=float)
    parser.add_argument("--spread-factor", type=float)
    parser.add_argument("--max-undetectable", type=float)
    parser.add_argument(
        "--issue-study",
        action="store_true",
        help="the synthetic study of issue 26 instead (300 rows, 2%% noise, 5 vs 5 and 2 vs 2)",
    )
    arguments = parser.parse_args()
    if arguments.issue_study:
        for name, value in issue_study(arguments.trials).items():
            print(f"{name}: {value:.1%}")
        raise SystemExit(0)
    options = {
        name: value
        for name, value in (
            ("threshold", arguments.threshold),
            ("spread_factor", arguments.spread_factor),
            ("max_undetectable", arguments.max_undetectable),
        )
        if value is not None
    }
    for name, value in measure(arguments.trials, samples=arguments.samples, **options).items():
        print(name, value)
