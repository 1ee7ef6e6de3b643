"""``menagerie history``: each row's median over commits, read from stored run records, with change points."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from menagerie.harness import registry
from menagerie.harness.cli.common import UsageError, console, errors, fraction
from menagerie.harness.formatting import format_seconds

# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "history": "each row's median over commits from stored runs, with change points",
}


def add_parser(commands) -> None:
    from menagerie.harness.timing import TIMERS

    hist = commands.add_parser("history", help=COMMANDS["history"])
    hist.add_argument("names", nargs="*", help="benchmark names, families or glob patterns (default: all stored)")
    hist.add_argument(
        "--store",
        action="append",
        type=Path,
        default=[],
        help="folder of run records, searched recursively (repeatable; default: whichever of "
        "results/history, results/baselines and results/runs exist)",
    )
    hist.add_argument("--device", help="device name as recorded (default: that of the most recent run)")
    hist.add_argument("--size", choices=registry.SIZES, help="size preset (default: that of the most recent run)")
    hist.add_argument("--timer", choices=TIMERS, help="timer (default: that of the most recent run)")
    for option in ("case", "impl", "dtype", "mode"):
        hist.add_argument(f"--{option}", help=f"glob on the {option}")
    hist.add_argument(
        "--threshold", type=fraction, default=None, help="smallest step reported as a change point (default 0.05 = 5%%)"
    )
    hist.add_argument("--cache-dir", type=Path, help="folder for the SQLite indexes (default: inside each store)")
    hist.add_argument("--plot", type=Path, help="also write the series as a PNG plot")
    hist.set_defaults(func=cmd_history)


def cmd_history(args) -> int:
    from menagerie.harness import change_points, history_plot, history_store

    stores = args.store or [
        path for path in (Path("results") / name for name in ("history", "baselines", "runs")) if path.is_dir()
    ]
    if not stores:
        raise UsageError(
            "no run records to read: give --store DIR (results/history, results/baselines and "
            "results/runs do not exist here)"
        )
    filters = {name: getattr(args, name) for name in ("case", "impl", "dtype", "mode")}
    try:
        with history_store.Store(stores, cache_dir=args.cache_dir) as store:
            threshold = change_points.DEFAULT_THRESHOLD if args.threshold is None else args.threshold
            found = history_store.query(
                store, args.names, device=args.device, size=args.size, timer=args.timer, threshold=threshold, **filters
            )
    except history_store.HistoryError as error:
        raise UsageError(str(error)) from None
    for warning in found.warnings:
        errors.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    if not found.series:
        console.print(f"no timed rows on {found.device} (size {found.size}, timer {found.timer}) match")
        return 1
    table = Table(
        title=f"history on {found.device} · size {found.size} · timer {found.timer} "
        f"({len(found.commits)} commits, oldest first; medians)",
        title_justify="left",
    )
    table.add_column("row", overflow="fold")
    for commit in found.commits:
        table.add_column(commit.label, justify="right")
    steps = []
    column = {commit: index for index, commit in enumerate(found.commits)}
    for key, points in history_plot.table(found).items():
        cells = ["-"] * len(found.commits)
        for commit, median, marker in points:
            cells[column[commit]] = format_seconds(median) + (" ◆" if marker else "")
            if marker:
                steps.append((" ".join(key), commit.label, marker))
        table.add_row(" ".join(key), *cells)
    console.print(table)
    for row, label, marker in steps:
        console.print(f"◆ {row}: {marker} from commit {label}", markup=False, highlight=False)
    if not steps:
        console.print("no change point")
    if args.plot:
        try:
            path = history_plot.plot(found, args.plot)
        except ImportError as error:
            raise UsageError(
                f"plots need matplotlib ({error}); install it with: pip install 'menagerie[report]'"
            ) from None
        console.print(f"wrote {path}")
    return 0
