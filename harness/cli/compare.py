"""``menagerie compare BASELINE NEW``: the regression gate; exit 1 when it fails.

Each side is a run record or a folder of them (replicates, a history, committed
baselines). The decision is ``menagerie.harness.gate.gate``'s; ``run --baseline`` and
``report --baseline`` go through the same functions here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.markup import escape
from rich.table import Table

from menagerie.harness.cli.common import UsageError, console, errors, fraction
from menagerie.harness.formatting import format_number, gate_rule
from menagerie.harness.results import ResultError, load_runs, write_json_atomically

if TYPE_CHECKING:
    from menagerie.harness.gate import GateResult
    from menagerie.harness.gate_config import GateConfig

COLOURS = {
    "regression": "red",
    "undecided": "red",
    "underpowered": "red",
    "error": "red",
    "accuracy_failed": "red",
    "wrong-after-timing": "red",
    "mutates-inputs": "red",
    "missing": "red",
    "missing_dtype": "red",
    "newly_skipped": "red",
    "params_changed": "red",
    "improvement": "green",
    "unchanged": "white",
    "new": "cyan",
    "skipped": "yellow",
}


# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "compare": "regression gate: NEW against BASELINE (run records or folders); exit 1 when it fails",
}


def add_parser(commands) -> None:
    compare = commands.add_parser("compare", help=COMMANDS["compare"])
    compare.add_argument(
        "baseline", type=Path, help="a run record, or a folder of them (replicates, history, committed baselines)"
    )
    compare.add_argument("new", type=Path, help="the run to check: a record or a folder of its replicates")
    add_gate_options(compare)
    compare.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="also write every verdict (ratio, interval, threshold, detectable slowdown, q) as JSON",
    )
    compare.add_argument(
        "--markdown",
        type=Path,
        metavar="PATH",
        help="also write a pull-request comment (at most 60 lines); with GITHUB_STEP_SUMMARY set, "
        "it goes to the job summary too",
    )
    compare.add_argument(
        "--junit",
        type=Path,
        metavar="PATH",
        help="also write a JUnit XML report: one test case per row, a failing verdict a failure",
    )
    compare.add_argument("--site-url", metavar="URL", help="the results site the Markdown links benchmarks to")
    compare.set_defaults(func=cmd_compare)


def add_gate_options(parser) -> None:
    """The gate's options. --threshold, --spread-factor and --max-undetectable default to None, so that a flag given
    can be told from one not given (which leaves the gate config's value, else the built-in default)."""
    from menagerie.harness.gate import DEFAULT_FDR, DEFAULT_K

    parser.add_argument(
        "--threshold",
        type=fraction,
        help="smallest slowdown that counts, before the row's own noise (default 0.02 = 2%%)",
    )
    parser.add_argument(
        "--spread-factor",
        type=fraction,
        metavar="K",
        help="a row's threshold is max(--threshold, K x its run-to-run spread in the baseline) "
        f"(default {DEFAULT_K:g})",
    )
    parser.add_argument(
        "--fdr",
        type=fraction,
        default=DEFAULT_FDR,
        help="false discovery rate across rows, Benjamini-Hochberg (default %(default)s)",
    )
    parser.add_argument(
        "--max-undetectable",
        type=fraction,
        metavar="FRACTION",
        help="a row (or the uniform shift) whose smallest slowdown caught with 80%% power exceeds "
        "this is underpowered, which fails the gate (default 0.10 = 10%%)",
    )
    parser.add_argument(
        "--gate-config",
        type=Path,
        metavar="PATH",
        help="the three settings above per benchmark glob, and their defaults under the flags: a pyproject.toml "
        "with [tool.menagerie.gate], or a TOML file that is that table (default: ./pyproject.toml's, if any)",
    )
    parser.add_argument(
        "--allow-missing", action="store_true", help="pass rows missing from NEW or newly skipped there"
    )
    parser.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="pass a different device, timer, size preset, dtype set or case params",
    )
    parser.add_argument(
        "--all",
        dest="show_all",
        action="store_true",
        help="list every compared row, not only the failing ones and the improvements",
    )
    parser.add_argument(
        "--sort",
        choices=sorted(ROW_ORDERS),
        default="ratio",
        help="order of the rows in each section: ratio (slowest first), name or q (default: ratio)",
    )


def load_side(path: Path, what: str) -> list[dict]:
    """The run records of one side; other JSON files in a folder are passed over with a warning."""
    try:
        records, passed_over = load_runs(path)
    except ResultError as error:
        raise UsageError(f"{what}: {error}") from None
    if passed_over:
        errors.print(
            f"warning: {what}: passed over {len(passed_over)} file(s) that are not run records, e.g. {passed_over[0]}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    return records


def _setting(record: dict) -> tuple:
    return record["provenance"]["device"], record["config"]["size"], record["config"]["timer"]


def load_gate_config(args) -> GateConfig:
    """The gate config in effect: ``--gate-config``'s, else ./pyproject.toml's (empty when there is none)."""
    from menagerie.harness import gate_config

    try:
        return gate_config.load(args.gate_config)
    except gate_config.GateConfigError as error:
        raise UsageError(str(error)) from None


def gate_against(baseline: list[dict], new: list[dict], args, config: GateConfig | None = None) -> GateResult:
    """The gate of NEW against those baseline records measured as NEW was (device, size preset, timer);
    when none were, against all of them, so that the mismatch fails the gate unless allowed. Each of threshold,
    spread factor and max undetectable defaults to its flag when given, else the gate config's top-level value,
    else the built-in default; the config's benchmark globs override them for their rows (``harness/gate_config.py``).
    ``config``: as ``load_gate_config(args)`` gives it (loaded here when not given)."""
    from menagerie.harness import gate_config
    from menagerie.harness.gate import DEFAULT_K, DEFAULT_MAX_UNDETECTABLE, DEFAULT_THRESHOLD, gate

    config = load_gate_config(args) if config is None else config
    built_in = {
        "threshold": DEFAULT_THRESHOLD,
        "spread_factor": DEFAULT_K,
        "max_undetectable": DEFAULT_MAX_UNDETECTABLE,
    }
    defaults = {
        name: getattr(args, name) if getattr(args, name) is not None else config.defaults.get(name, value)
        for name, value in built_in.items()
    }

    settings = {_setting(record) for record in new}
    matching = [record for record in baseline if _setting(record) in settings]
    if matching and len(matching) < len(baseline):
        errors.print(
            f"baseline: {len(matching)} of {len(baseline)} records were measured as NEW was "
            f"({', '.join(map(str, sorted(settings)))}); the others are left out",
            markup=False,
            highlight=False,
        )
    try:
        result = gate(
            matching or baseline,
            new,
            **defaults,
            fdr=args.fdr,
            allow_missing=args.allow_missing,
            allow_mismatch=args.allow_mismatch,
            per_benchmark=config.rules,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    if config.defaults or config.rules:  # a config in effect: a warning per glob that matches nothing, then a note
        unmatched = gate_config.unmatched(config.rules, {row.key[0] for row in result.rows})
        for glob in unmatched:
            errors.print(
                f"warning: {config.path}: benchmark glob {glob!r} matches none of the compared benchmarks",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        top = ", ".join(f"{name} {value:g}" for name, value in config.defaults.items())
        errors.print(
            f"[dim]gate config {escape(str(config.path))}: "
            + (f"defaults {top} where no flag is given; " if top else "")
            + f"{len(config.rules) - len(unmatched)} of {len(config.rules)} benchmark glob(s) applied",
            highlight=False,
            soft_wrap=True,
        )
    return result


ROW_COLUMN_WIDTH = 40  # the names of a row in the terminal view; the numbers and the verdict take the rest
# --sort: the order of rows within each section of the terminal view.
ROW_ORDERS = {
    "ratio": lambda row: (row.ratio is None, -(row.ratio or 0.0)),  # slowest first
    "name": lambda row: row.key,
    "q": lambda row: (row.q_value is None, row.q_value or 0.0),
}


def _uniform_line(uniform) -> str:
    ci = f", 95% CI {uniform.ci[0]:.3f}-{uniform.ci[1]:.3f}" if uniform.ci else ""
    detectable = f", detectable {uniform.detectable:.1%}" if uniform.detectable is not None else ""
    ratio = f"{uniform.ratio:.3f}" if uniform.ratio is not None else "-"
    return f"uniform shift of whole runs: new/base {ratio}{ci}{detectable}: {uniform.verdict}"


def _rows_table(title: str, rows: list) -> Table:
    """One row a cell of three lines, never wrapped: the benchmark; the implementation, dtype and mode; the case
    (cut with an ellipsis when it is longer than the column). ``ratio`` is new/base; ``threshold`` the row's own T
    (per benchmark when a gate config sets it); only the verdict folds."""
    # Two spaces between columns and none at the edges: at 100 columns the verdict keeps about a dozen.
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True
    )
    table.add_column("row", no_wrap=True, overflow="ellipsis", max_width=ROW_COLUMN_WIDTH)
    for column in ("ratio", "95% CI", "threshold", "detectable", "q"):
        table.add_column(column, no_wrap=True, justify="right")
    table.add_column("verdict", overflow="fold", ratio=1)
    for row in rows:
        benchmark, case, impl, dtype, mode = row.key
        verdict = row.verdict + (
            f": {row.detail}"
            if row.detail and not row.ci
            else f" (needs {row.replicates_needed} per side)"
            if row.replicates_needed
            else ""
        )
        table.add_row(
            escape(f"{benchmark}\n{impl} {dtype} {mode}\n{case}"),
            format_number(row.ratio, ".3f"),
            f"{row.ci[0]:.3f}-{row.ci[1]:.3f}" if row.ci else "-",
            format_number(row.threshold, ".1%"),
            format_number(row.detectable, ".1%"),
            format_number(row.q_value, ".2g"),
            f"[{COLOURS[row.verdict]}]{escape(verdict)}[/]",
        )
    return table


def print_gate(result: GateResult, show_all: bool = False, sort: str = "ratio") -> None:
    """The answer first: the verdict, the uniform shift and the record findings; then the failing rows, then the
    improvements, and the other rows as one count line unless ``show_all``; then why the gate failed."""
    if result.passed:
        console.print("[green]gate passed: no regression, nothing missing, undecided or underpowered")
    else:
        console.print(f"[red]gate failed: {len(result.reasons)} reason(s), listed at the end")
    if result.uniform:
        console.print(_uniform_line(result.uniform), highlight=False, markup=False)
    for finding in result.findings:
        console.print(
            f"{'[red]' if finding.failing else '[yellow]'}{finding.kind}[/] {escape(finding.detail)}", highlight=False
        )
    console.print(f"[dim]{escape(gate_rule(result))}", highlight=False)
    order = ROW_ORDERS[sort]
    failing = sorted((row for row in result.rows if row.failing), key=order)
    improved = sorted((row for row in result.rows if row.verdict == "improvement" and not row.failing), key=order)
    others = sorted((row for row in result.rows if not row.failing and row.verdict != "improvement"), key=order)
    if failing:
        console.print(_rows_table(f"failing: {len(failing)} row(s)", failing))
    if improved:
        console.print(_rows_table(f"improvements: {len(improved)} row(s)", improved))
    if others and show_all:
        console.print(_rows_table(f"other rows: {len(others)}", others))
    elif others:
        counts = {}
        for row in others:
            counts[row.verdict] = counts.get(row.verdict, 0) + 1
        console.print(
            f"{len(others)} other row(s): "
            + ", ".join(f"{count} {verdict}" for verdict, count in sorted(counts.items()))
            + " (--all lists them)",
            highlight=False,
        )
    if result.passed:
        return
    console.print("why the gate failed:")
    for finding in result.findings:
        if finding.failing:
            console.print(f"  {finding.kind}: {finding.detail}", markup=False, highlight=False)
    for row in result.failures:  # the name on a line of its own, never wrapped; the long case last, cut if need be
        benchmark, case, impl, dtype, mode = row.key
        console.print(
            f"  {benchmark} {impl} {dtype} {mode} {case}",
            markup=False,
            highlight=False,
            no_wrap=True,
            overflow="ellipsis",
        )
        console.print(f"    {row.verdict}: {row.detail}", markup=False, highlight=False)


GATE_JSON_VERSION = 1  # harness/gate_schema.json


def gate_json(result: GateResult) -> dict:
    """The gate's verdicts as plain JSON values: the rule, the uniform shift, every row and the record findings;
    described by ``harness/gate_schema.json``."""
    return {
        "schema_version": GATE_JSON_VERSION,
        "passed": result.passed,
        "rule": gate_rule(result),
        "threshold": result.threshold,
        "spread_factor": result.spread_factor,
        "fdr": result.fdr,
        "max_undetectable": result.max_undetectable,
        "uniform": dataclasses.asdict(result.uniform) if result.uniform else None,
        "rows": [dataclasses.asdict(row) for row in result.rows],
        "findings": [dataclasses.asdict(finding) for finding in result.findings],
        "reasons": result.reasons,
    }


def cmd_compare(args) -> int:
    result = gate_against(load_side(args.baseline, "baseline"), load_side(args.new, "new"), args)
    print_gate(result, args.show_all, args.sort)
    if args.json:
        write_json_atomically(gate_json(result), args.json)
        console.print(f"wrote {args.json}")
    write_ci_outputs(result, args)
    return 0 if result.passed else 1


def write_ci_outputs(result: GateResult, args) -> None:
    """``--markdown``, ``--junit``, and under GitHub Actions the job summary and ``::error`` annotations."""
    from menagerie.harness import gate_outputs
    from menagerie.harness.results import write_text_atomically

    comment = gate_outputs.markdown(result, args.site_url)
    if args.markdown:
        write_text_atomically(comment, args.markdown)
        console.print(f"wrote {args.markdown}")
    if args.junit:
        write_text_atomically(gate_outputs.junit(result), args.junit)
        console.print(f"wrote {args.junit}")
    for annotation in gate_outputs.github(result, comment):
        print(annotation)  # plain stdout: GitHub reads the workflow command from the start of the line
