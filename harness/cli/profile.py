"""``menagerie profile``: run rows under torch.profiler; TensorBoard traces and a top-operators table per row."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from menagerie.harness.cli.common import (
    UsageError,
    add_row_selection,
    console,
    positive,
    progress_bar,
    requested_device,
    select,
    selected_rows,
)
from menagerie.harness.formatting import format_seconds

if TYPE_CHECKING:
    from menagerie.harness.profile import ProfiledRow


# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "profile": "run rows under torch.profiler: TensorBoard traces, top-ops table",
}


def add_parser(commands) -> None:
    from menagerie.harness.profile import DEFAULT_PROFILES_DIR

    prof = commands.add_parser("profile", help=COMMANDS["profile"])
    prof.add_argument("names", nargs="+", help="benchmark names, families or glob patterns")
    add_row_selection(prof)
    prof.add_argument("--steps", type=positive(int), default=3, help="profiled calls per row, after one warm-up call")
    prof.add_argument("--top", type=positive(int), default=10, help="operators shown per row, by self time")
    prof.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_PROFILES_DIR,
        help="TensorBoard log folder; each profile is a new run folder inside it",
    )
    prof.set_defaults(func=cmd_profile)


def cmd_profile(args) -> int:
    from menagerie.harness import runner
    from menagerie.harness.profile import new_run_dir, profile

    device = requested_device(args.device)
    # The timer is unused: profiling does not time.
    config = selected_rows(args, device, timer="events" if device.type == "cuda" else "cpu")
    benchmarks = select(args.names)
    tasks = runner.plan(benchmarks, config)
    if not tasks or not any(task.impls for task in tasks):
        raise UsageError(
            "nothing to profile: no case, implementation, dtype and mode matches the filters "
            f"(size {config.size}); see `menagerie list`"
        )
    run_dir = new_run_dir(args.out, benchmarks)
    with progress_bar() as progress:
        bar = progress.add_task("profiling", total=sum(len(task.impls) for task in tasks))
        rows = profile(
            tasks,
            device,
            run_dir,
            steps=args.steps,
            top=args.top,
            on_row=lambda row: progress.update(bar, advance=1, description=f"profiled {row.label}"),
        )
    print_profile(rows, device)
    console.print(f"wrote traces to {run_dir}\nview them with: tensorboard --logdir {args.out}")
    failed = [row for row in rows if row.status == "error"]
    if failed:
        console.print(f"[red]{len(failed)} row(s) crashed (see the reason column)")
    return 1 if failed else 0


def print_profile(rows: list[ProfiledRow], device) -> None:
    summary = Table(title="profiled rows", title_justify="left")
    for column in ("row", "status", "per call", "reason"):
        summary.add_column(column, justify="right" if column == "per call" else "left", overflow="fold")
    for row in rows:
        summary.add_row(row.label, row.status, format_seconds(row.call_s), row.reason)
    console.print(summary)
    on_cuda = device.type == "cuda"
    for row in rows:
        if not row.ops:
            continue
        console.print(
            f"[bold]{row.label}[/]: top operators by self {'CUDA' if on_cuda else 'CPU'} time", highlight=False
        )
        table = Table()
        table.add_column("operator", overflow="fold")
        for column in ("calls", "self CPU", "CPU total") + (("self CUDA",) if on_cuda else ()) + ("self CPU mem",):
            table.add_column(column, justify="right")
        for op in row.ops:
            device_cells = (format_seconds(op.self_device_s),) if on_cuda else ()
            table.add_row(
                op.name,
                str(op.calls),
                format_seconds(op.self_cpu_s),
                format_seconds(op.cpu_total_s),
                *device_cells,
                f"{op.self_cpu_memory_bytes / 2**20:.3g} MiB",
            )
        console.print(table)
