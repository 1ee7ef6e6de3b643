"""``menagerie compare BASELINE NEW``: the regression gate; exit 1 when it fails.

Each side is a run record or a folder of them (replicates, a history, committed
baselines). The decision is ``menagerie.harness.gate.gate``'s; ``run --baseline`` and
``report --baseline`` go through the same functions here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from menagerie.harness.cli.common import UsageError, console, errors, fraction
from menagerie.harness.formatting import GATE_COLUMNS, gate_cells, gate_rule
from menagerie.harness.results import ResultError, load_runs, write_json_atomically

if TYPE_CHECKING:
    from menagerie.harness.gate import GateResult

COLOURS = {"regression": "red", "undecided": "red", "underpowered": "red", "error": "red", "accuracy_failed": "red",
           "wrong-after-timing": "red", "mutates-inputs": "red", "missing": "red",
           "missing_dtype": "red", "newly_skipped": "red", "params_changed": "red", "improvement": "green",
           "unchanged": "white", "new": "cyan", "skipped": "yellow"}


# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "compare": "regression gate: NEW against BASELINE (run records or folders); "
               "exit 1 when it fails",
}


def add_parser(commands) -> None:
    compare = commands.add_parser("compare", help=COMMANDS["compare"])
    compare.add_argument("baseline", type=Path, help="a run record, or a folder of them (replicates, history, "
                                                     "committed baselines)")
    compare.add_argument("new", type=Path, help="the run to check: a record or a folder of its replicates")
    add_gate_options(compare)
    compare.add_argument("--json", type=Path, metavar="PATH",
                         help="also write every verdict (ratio, interval, threshold, detectable slowdown, q) as JSON")
    compare.set_defaults(func=cmd_compare)


def add_gate_options(parser) -> None:
    from menagerie.harness.gate import DEFAULT_FDR, DEFAULT_K, DEFAULT_MAX_UNDETECTABLE, DEFAULT_THRESHOLD

    parser.add_argument("--threshold", type=fraction, default=DEFAULT_THRESHOLD,
                        help="smallest slowdown that counts, before the row's own noise (default 0.02 = 2%%)")
    parser.add_argument("--spread-factor", type=fraction, default=DEFAULT_K, metavar="K",
                        help="a row's threshold is max(--threshold, K x its run-to-run spread in the baseline) "
                             "(default %(default)s)")
    parser.add_argument("--fdr", type=fraction, default=DEFAULT_FDR,
                        help="false discovery rate across rows, Benjamini-Hochberg (default %(default)s)")
    parser.add_argument("--max-undetectable", type=fraction, default=DEFAULT_MAX_UNDETECTABLE, metavar="FRACTION",
                        help="a row (or the uniform shift) whose smallest slowdown caught with 80%% power exceeds "
                             "this is underpowered, which fails the gate (default 0.10 = 10%%)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="pass rows missing from NEW or newly skipped there")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="pass a different device, timer, size preset, dtype set or case params")


def load_side(path: Path, what: str) -> list[dict]:
    """The run records of one side; other JSON files in a folder are passed over with a warning."""
    try:
        records, passed_over = load_runs(path)
    except ResultError as error:
        raise UsageError(f"{what}: {error}") from None
    if passed_over:
        errors.print(f"warning: {what}: passed over {len(passed_over)} file(s) that are not run records, "
                     f"e.g. {passed_over[0]}", markup=False, highlight=False, soft_wrap=True)
    return records


def _setting(record: dict) -> tuple:
    return record["provenance"]["device"], record["config"]["size"], record["config"]["timer"]


def gate_against(baseline: list[dict], new: list[dict], args) -> GateResult:
    """The gate of NEW against those baseline records measured as NEW was (device, size preset, timer);
    when none were, against all of them, so that the mismatch fails the gate unless allowed."""
    from menagerie.harness.gate import gate

    settings = {_setting(record) for record in new}
    matching = [record for record in baseline if _setting(record) in settings]
    if matching and len(matching) < len(baseline):
        errors.print(f"baseline: {len(matching)} of {len(baseline)} records were measured as NEW was "
                     f"({', '.join(map(str, sorted(settings)))}); the others are left out", markup=False,
                     highlight=False)
    try:
        return gate(matching or baseline, new, threshold=args.threshold, spread_factor=args.spread_factor,
                    fdr=args.fdr, allow_missing=args.allow_missing, allow_mismatch=args.allow_mismatch,
                    max_undetectable=args.max_undetectable)
    except ValueError as error:
        raise UsageError(str(error)) from None


def print_gate(result: GateResult) -> None:
    table = Table(title=gate_rule(result), title_justify="left")
    for column in GATE_COLUMNS:
        table.add_column(column, overflow="fold")
    for row, cells in zip(result.all_rows, gate_cells(result)):
        table.add_row(*(escape(cell) for cell in cells[:-1]),
                      f"[{COLOURS[row.verdict]}]{escape(cells[-1])}[/]")
    console.print(table)
    for finding in result.findings:
        console.print(f"{'[red]' if finding.failing else '[yellow]'}{finding.kind}[/] {escape(finding.detail)}",
                      highlight=False)
    if result.passed:
        console.print("[green]gate passed: no regression, nothing missing, undecided or underpowered")
        return
    console.print(f"[red]gate failed: {len(result.reasons)} reason(s)")
    for reason in result.reasons:
        console.print(f"  {reason}", markup=False, highlight=False)


def gate_json(result: GateResult) -> dict:
    """The gate's verdicts as plain JSON values: the rule, the uniform shift, every row and the record findings."""
    return {"passed": result.passed, "rule": gate_rule(result), "threshold": result.threshold,
            "spread_factor": result.spread_factor, "fdr": result.fdr, "max_undetectable": result.max_undetectable,
            "uniform": dataclasses.asdict(result.uniform) if result.uniform else None,
            "rows": [dataclasses.asdict(row) for row in result.rows],
            "findings": [dataclasses.asdict(finding) for finding in result.findings], "reasons": result.reasons}


def cmd_compare(args) -> int:
    result = gate_against(load_side(args.baseline, "baseline"), load_side(args.new, "new"), args)
    print_gate(result)
    if args.json:
        write_json_atomically(gate_json(result), args.json)
        console.print(f"wrote {args.json}")
    return 0 if result.passed else 1
