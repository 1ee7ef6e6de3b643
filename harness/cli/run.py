"""``menagerie run``: check accuracy, time and record benchmarks; optionally gate on a baseline.

``--repeat N`` runs the same command in N fresh processes, one after another
(``menagerie.harness.replicates``), and writes one record that keeps the replicates apart. Such a
child process is told by ``REPLICATE_ENV`` where its record goes and does nothing else.
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import os
import shutil
from pathlib import Path

from rich.table import Table

from menagerie.harness import shards
from menagerie.harness.cli.common import (
    Interrupted,
    UsageError,
    add_row_selection,
    console,
    errors,
    fraction,
    positive,
    progress_bar,
    requested_device,
    select,
    selected_rows,
)
from menagerie.harness.cli.compare import add_gate_options, gate_against, load_gate_config, load_side, print_gate
from menagerie.harness.formatting import format_number, format_seconds
from menagerie.harness.registry import dtype_name
from menagerie.harness.results import DEFAULT_RUNS_DIR, FAILED_STATUSES, write_run
from menagerie.harness.throttle import DEFAULT_MIN_CLOCK

GATING_REPEAT = 3
# nvbench's default: on a GPU, each row samples until its median is known to 0.5%. CPU timings here exist to check
# the harness end to end (interpreted Triton), so there the fixed budget stays the default.
DEFAULT_MAX_NOISE = 0.005


# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "run": "check accuracy, time and record benchmarks",
}


def add_parser(commands) -> None:
    from menagerie.harness.timing import TIMERS

    run = commands.add_parser("run", help=COMMANDS["run"])
    run.add_argument("names", nargs="*", help="benchmark names, families or glob patterns (default: all)")
    add_row_selection(run)
    run.add_argument("--timer", choices=TIMERS, help="events (default on a GPU), graph, or cpu (the CPU's only timer)")
    run.add_argument("--warmup", type=positive(float), default=0.2, help="warm-up budget per row, seconds")
    run.add_argument("--budget", type=positive(float), default=1.0, help="measurement budget per row, seconds")
    run.add_argument(
        "--min-reps",
        type=positive(int),
        default=5,
        help="fewest samples per row and replicate (a sample spans calls_per_sample calls)",
    )
    run.add_argument("--max-reps", type=positive(int), default=500, help="most samples per row and replicate")
    run.add_argument(
        "--blocks",
        type=positive(int),
        default=10,
        help="blocks the samples are taken in, spread over the budget, implementations taking turns",
    )
    run.add_argument(
        "--max-noise",
        type=fraction,
        metavar="FRACTION",
        help="sample each row until the 95%% CI half-width of its median is at most this fraction of "
        "the median (0.005: 0.5%%; default: 0.005 on a GPU, 0 on the CPU: the fixed --budget)",
    )
    run.add_argument(
        "--max-time",
        type=positive(float),
        metavar="SECONDS",
        help="with --max-noise, the most sampling time per row; a row still noisier is 'noisy' (default: 3 x --budget)",
    )
    run.add_argument(
        "--min-clock",
        type=fraction,
        default=DEFAULT_MIN_CLOCK,
        metavar="FRACTION",
        help="on a GPU, a block timed below this share of the SM clock seen after the warm-ups (or with "
        "a thermal or power slowdown) is taken again; kept after 20 retakes, the row is 'throttled' "
        "(default: %(default)s)",
    )
    run.add_argument("--seeds", type=positive(int), default=3, help="fresh inputs for the accuracy check")
    run.add_argument("--out", type=Path, default=DEFAULT_RUNS_DIR, help="folder (or .json path) for the record")
    run.add_argument(
        "--repeat",
        type=positive(int),
        help=f"process-level replicates, each a fresh process (default {GATING_REPEAT} with --baseline, else 1)",
    )
    run.add_argument(
        "--baseline",
        type=Path,
        help="gate against this run record or folder of them (as `menagerie compare`); exit 1 when the gate fails",
    )
    run.add_argument(
        "--resume",
        type=Path,
        metavar="FOLDER",
        help="continue an interrupted --repeat run from its replicate folder (named when it stopped): "
        "the replicates recorded there are kept, the missing ones run; other arguments are the "
        "original run's",
    )
    run.add_argument(
        "--shard",
        type=shard_argument,
        metavar="K/N",
        help="run only shard K of N (from 1): whole (benchmark, case) groups, balanced by expected time, "
        "the same split on every machine; `menagerie merge` joins the N records",
    )
    add_gate_options(run)
    run.set_defaults(func=cmd_run, replicate_folder=None)  # replicate_folder: set by --resume


def shard_argument(text: str) -> shards.Shard:
    try:
        return shards.parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def cmd_run(args) -> int:
    from menagerie.harness import provenance, replicates, runner
    from menagerie.harness.timing import Budget

    if args.resume:
        return resume(args)
    device = requested_device(args.device)
    timer = args.timer or ("events" if device.type == "cuda" else "cpu")
    if (device.type == "cpu") != (timer == "cpu"):
        raise UsageError(
            f"--timer {timer} does not work on {device.type}: use 'cpu' on the CPU, 'events' or 'graph' on a GPU"
        )
    if args.shard is not None and args.baseline is not None:
        raise UsageError(
            "--shard with --baseline: a shard lacks the other shards' rows; gate the merged record "
            "(`menagerie merge`, then `menagerie compare`)"
        )
    if args.min_reps > args.max_reps:
        raise UsageError(f"--min-reps {args.min_reps} is larger than --max-reps {args.max_reps}")
    config = selected_rows(
        args,
        device,
        timer=timer,
        seeds=args.seeds,
        shard=args.shard,
        budget=Budget(
            warmup_s=args.warmup,
            measure_s=args.budget,
            min_reps=args.min_reps,
            max_reps=args.max_reps,
            blocks=args.blocks,
            max_time_s=args.max_time,
            min_clock=args.min_clock,
            max_noise=DEFAULT_MAX_NOISE if args.max_noise is None and device.type == "cuda" else args.max_noise or 0.0,
        ),
    )
    benchmarks = select(args.names)
    unmatched = unmatched_filter(benchmarks, config)
    if unmatched:
        raise UsageError(unmatched)
    tasks = runner.plan(benchmarks, config)
    if not tasks and config.shard is not None:
        raise UsageError(
            f"shard {config.shard} holds no rows: the filters leave fewer (benchmark, case) groups "
            f"than {config.shard.count} shards"
        )
    if not tasks:
        raise UsageError(
            f"nothing to run: no case, dtype and mode matches the filters (size {config.size}); see `menagerie list`"
        )
    replicate_out = os.environ.get(replicates.REPLICATE_ENV)
    if replicate_out:
        write_run(_run_once(benchmarks, config, tasks), Path(replicate_out))
        return 0
    baseline = load_side(args.baseline, "baseline") if args.baseline else None
    gate_config = load_gate_config(args) if baseline is not None else None  # a bad one stops the run before it starts
    repeat = args.repeat or (GATING_REPEAT if baseline else 1)
    if repeat == 1:
        record = _run_once(benchmarks, config, tasks)
    else:
        folder = args.replicate_folder
        if folder is None:
            folder = replicates.WorkFolder.create(args.out, args.argv, repeat, provenance.collect(device))
            errors.print(f"{repeat} replicates, kept in {folder.path} until merged", markup=False, highlight=False)
        record = run_replicates(folder, args.argv, repeat)
    path = write_run(record, args.out)
    if repeat > 1:
        shutil.rmtree(folder.path, ignore_errors=True)  # merged and written: the replicates are in the record
    print_run_table(record)
    for number, replicate in enumerate(record["replicates"], 1):
        for warning in replicate["warnings"]:
            errors.print(f"warning: replicate {number}: {warning}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {path}")
    failed = [row for row in record["rows"] if row["status"] in FAILED_STATUSES]
    if failed:
        console.print(
            f"[red]{len(failed)} row(s) failed: accuracy, a recheck after timing or errors (see the status column)"
        )
    if baseline is not None:
        result = gate_against(baseline, [record], args, gate_config)
        print_gate(result, args.show_all, args.sort)
        return 1 if failed or not result.passed else 0
    return 1 if failed else 0


def _run_once(benchmarks, config, tasks) -> dict:
    """One replicate in this process, with a progress bar."""
    from menagerie.harness import runner

    with progress_bar() as progress:
        bar = progress.add_task("measuring ceilings", total=sum(len(task.impls) for task in tasks))
        return runner.run(
            benchmarks,
            config,
            on_task=lambda task: progress.update(
                bar, description=f"{task.benchmark.name} {task.case.name} {dtype_name(task.dtype)} {task.mode}"
            ),
            on_row=lambda row: progress.advance(bar),
        )


def print_run_table(record: dict) -> None:
    prov = record["provenance"]
    console.print(
        f"[bold]{prov['device']}[/] · torch {prov['torch']} · triton {prov['triton']} · "
        f"size {record['config']['size']} · timer {record['config']['timer']} · "
        f"{record['config']['repeat']} replicate(s)"
    )
    notes = []
    for bench in dict.fromkeys(row["benchmark"] for row in record["rows"]):
        table = Table(title=bench, title_justify="left")
        for column in (
            "case dtype mode",
            "impl",
            "median",
            "95% CI",
            "noise",
            "× ref",
            "TFLOP/s",
            "GB/s",
            "% roof",
            "max err",
            "status",
        ):
            table.add_column(column, justify="left" if column in ("case dtype mode", "impl", "status") else "right")
        for row in (row for row in record["rows"] if row["benchmark"] == bench):
            stats, metrics, acc = row["stats"], row["metrics"], row["accuracy"]
            status = {
                "ok": "[green]ok",
                "noisy": "[yellow]noisy",
                "throttled": "[red]THROTTLED",
                "accuracy_failed": "[red]ACCURACY",
                "error": "[red]ERROR",
                "wrong-after-timing": "[red]WRONG AFTER TIMING",
                "mutates-inputs": "[red]MUTATES INPUTS",
                "skipped": "[yellow]skipped",
            }[row["status"]]
            if row["reason"]:
                notes.append(f"{bench} {row['case']} {row['dtype']} {row['mode']} {row['impl']}: {row['reason']}")
                status += f" [{len(notes)}]"
            table.add_row(
                f"{row['case']} {row['dtype']} {row['mode']}",
                row["impl"],
                format_seconds(stats and stats["median_s"]),
                f"{format_seconds(stats['ci95_s'][0])}–{format_seconds(stats['ci95_s'][1])}" if stats else "-",
                _percent(stats and stats.get("noise")),
                format_number(metrics["speedup_vs_reference"], ".3g"),
                format_number(metrics["tflops"], ".3g"),
                format_number(metrics["gbps"], ".3g"),
                format_number(metrics["roofline_pct"], ".1f"),
                format_number(acc and acc["max_abs_err"], ".1e"),
                status,
            )
        console.print(table)
    for number, note in enumerate(notes, 1):
        console.print(f"[{number}] {note}", markup=False, highlight=False)


def _percent(fraction_or_none: float | None) -> str:
    return "-" if fraction_or_none is None else f"{100 * fraction_or_none:.2g}%"


def unmatched_filter(benchmarks, config) -> str | None:
    """The first --impl or --case pattern that matches nothing in the chosen benchmarks, with the closest names."""
    known = {
        "--impl": sorted({impl.name for bench in benchmarks for impl in bench.impls}),
        "--case": sorted({case.name for bench in benchmarks for case in bench.cases.get(config.size, ())}),
    }
    for flag, patterns in (("--impl", config.impls), ("--case", config.cases)):
        for pattern in patterns:
            if not fnmatch.filter(known[flag], pattern):
                close = difflib.get_close_matches(pattern, known[flag], n=3, cutoff=0.5)
                return (
                    f"{flag} {pattern!r} matches nothing"
                    + (f"; did you mean {' or '.join(map(repr, close))}?" if close else "")
                    + f" (at size {config.size}: {', '.join(known[flag])})"
                )
    return None


def run_replicates(folder, argv: list[str], repeat: int) -> dict:
    """The replicates missing from ``folder``, each a fresh process, merged with those it holds. Interrupted or
    failed, the finished replicates stay in ``folder`` and the message says how to go on."""
    from menagerie.harness import replicates

    manifest = folder.manifest()
    try:
        records = replicates.spawn(
            argv,
            repeat,
            folder,
            on_start=lambda index: errors.print(
                f"replicate {index + 1} of {repeat} (a fresh process)", highlight=False
            ),
        )
        return replicates.merge(records, manifest["provenance"])
    except KeyboardInterrupt:
        raise Interrupted(
            f"{len(folder.recorded(repeat))} of {repeat} replicates are recorded in {folder.path}; "
            f"continue with `menagerie run --resume {folder.path}`"
        ) from None
    except replicates.ReplicateError as error:
        raise UsageError(
            f"{error}; the finished replicates are kept in {folder.path}: "
            f"`menagerie run --resume {folder.path}` runs the missing ones"
        ) from None


def resume(args) -> int:
    """``--resume FOLDER``: the original command, run again with its finished replicates kept (its record and,
    with ``--baseline``, its gate, as if it had never stopped)."""
    from menagerie.harness import replicates
    from menagerie.harness.cli import build_parser

    folder = replicates.WorkFolder(args.resume)
    try:
        manifest = folder.manifest()
    except replicates.ReplicateError as error:
        raise UsageError(str(error)) from None
    repeat, argv = int(manifest["repeat"]), manifest["argv"]
    errors.print(
        f"resuming `menagerie {' '.join(argv)}`: {len(folder.recorded(repeat))} of {repeat} replicates "
        f"already recorded",
        markup=False,
        highlight=False,
    )
    original = build_parser(argv).parse_args(argv)
    original.argv, original.replicate_folder = argv, folder
    return cmd_run(original)
