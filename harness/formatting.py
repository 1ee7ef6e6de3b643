"""How numbers read in tables (terminal, HTML, Markdown): one spelling everywhere."""

import re


def format_seconds(seconds: float | None) -> str:
    """``1.23 ms``-style, three significant digits; ``-`` for a missing value."""
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


GATE_COLUMNS = (
    "benchmark",
    "case",
    "impl",
    "dtype",
    "mode",
    "baseline",
    "new",
    "new/base",
    "95% CI",
    "spread",
    "threshold",
    "detectable",
    "runs",
    "q",
    "verdict",
)


def gate_cells(result) -> list[tuple[str, ...]]:
    """One line per row of a ``menagerie.harness.gate.GateResult`` (the uniform shift first, when tested), for
    ``GATE_COLUMNS``. A verdict the statistics did not decide (missing, error, ...) carries its reason."""
    return [
        (
            *row.key,
            format_seconds(row.baseline_s),
            format_seconds(row.new_s),
            format_number(row.ratio, ".3f"),
            f"{row.ci[0]:.3f} – {row.ci[1]:.3f}" if row.ci else "-",
            format_number(row.spread, ".1%"),
            format_number(row.threshold, ".1%"),
            format_number(row.detectable, ".1%"),
            f"{row.n_baseline} vs {row.n_new}" if row.n_baseline or row.n_new else "-",
            format_number(row.q_value, ".2g"),
            row.verdict
            + (
                f": {row.detail}"
                if row.detail and not row.ci
                else f" (needs {row.replicates_needed} per side)"
                if row.replicates_needed
                else ""
            ),
        )
        for row in result.all_rows
    ]


def gate_rule(result) -> str:
    """The regression gate's rule, as it was applied, in one line."""
    return (
        f"regression: slower than max({result.threshold:.0%}, {result.spread_factor:g} × the row's run-to-run "
        f"spread), with the false discovery rate across rows held at {result.fdr:.0%} (Benjamini–Hochberg) and "
        f"the uniform shift tested at {result.fdr:.0%} on its own; underpowered: a slowdown of "
        f"{result.max_undetectable:.0%} would be caught with less than 80% power"
    )


def slug(text: str) -> str:
    """A name as a file name of the results site (``benchmarks/<slug>.html``)."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "x"
