"""``menagerie report``: PNG plots, a self-contained HTML page and Markdown tables of a run."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from menagerie.harness.cli.common import UsageError, console, load
from menagerie.harness.cli.compare import add_gate_options, gate_against, load_side

# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "report": "PNG plots, a self-contained HTML page and a Markdown table of a run",
}


def add_parser(commands) -> None:
    rep = commands.add_parser("report", help=COMMANDS["report"])
    rep.add_argument("run", type=Path, help="a run record (results/runs/*.json) or a baseline")
    rep.add_argument(
        "--baseline",
        type=Path,
        help="also gate the run against this run record or folder of them (as `menagerie compare`)",
    )
    add_gate_options(rep)
    rep.add_argument("--out", type=Path, help="folder for the report (default: results/reports/<run file name>)")
    rep.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    try:
        from menagerie.harness import report
    except ImportError as error:
        raise UsageError(
            f"reports need matplotlib ({error}); install it with: pip install 'menagerie[report]'"
        ) from None
    record = load(args.run)
    gated = gate_against(load_side(args.baseline, "baseline"), [record], args) if args.baseline else None
    out = args.out or Path("results") / "reports" / args.run.stem
    with console.status(f"rendering the report of {args.run}"):
        try:
            files = report.build_report(record, out, gated)
        except report.ReportError as error:
            raise UsageError(f"{args.run}: {error}") from None
    table = Table(title=f"report of {args.run} ({len(record['rows'])} rows)", title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("what")
    table.add_row(
        str(files.html),
        "self-contained page: provenance, ceilings, plots, every row"
        + (", the regression gate against the baseline" if gated else ""),
    )
    table.add_row(str(files.markdown), "Markdown tables for a README")
    for name, path in files.plots.items():
        table.add_row(str(path), f"{name} plot")
    console.print(table)
    return 0
