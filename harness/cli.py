"""``menagerie``: list, run, compare, profile, report and describe the environment.

Exit codes: 0 success; 1 a regression, an accuracy failure or a crashed
implementation; 2 bad arguments or unreadable input.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness import ceilings, provenance, registry, runner
from harness.compare import DEFAULT_ALPHA, DEFAULT_THRESHOLD, Comparison, compare_runs
from harness.device import default_device, parse_device
from harness.formatting import format_number, format_seconds
from harness.gpu_archs import ARCHS, DEFAULT_ARCHS, parse_archs
from harness.profile import DEFAULT_PROFILES_DIR, ProfiledRow, new_run_dir, profile
from harness.results import DEFAULT_RUNS_DIR, ResultError, load_run, write_json_atomically, write_run
from harness.timing import TIMERS, Budget

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
          "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}

# Tables need room: a pipe or a CI log gets 160 columns instead of the 80 rich assumes there.
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True)


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit code 2."""


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value
    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.05, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative fraction such as 0.05 (5%), got {text!r}")
    return value


def _add_row_selection(parser: argparse.ArgumentParser) -> None:
    """Which rows of the chosen benchmarks: cases, implementations, preset, dtypes, modes, device."""
    parser.add_argument("--case", action="append", default=[], help="glob on case names (repeatable)")
    parser.add_argument("--impl", action="append", default=[], help="glob on implementation names (repeatable)")
    parser.add_argument("--size", choices=registry.SIZES, help="size preset (default: small on a GPU, tiny on the CPU)")
    parser.add_argument("--dtype", action="append", choices=sorted(DTYPES), default=[],
                        help="dtype (repeatable; default: bf16 on a GPU, fp32 on the CPU)")
    parser.add_argument("--mode", action="append", choices=registry.MODES, default=[],
                        help="mode (repeatable; default: every mode the benchmark declares)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="menagerie", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list registered benchmarks, their cases and implementations")
    listing.add_argument("names", nargs="*", help="benchmark names, families or glob patterns")
    listing.add_argument("--size", choices=registry.SIZES, default=None, help="show only this preset's cases")

    run = commands.add_parser("run", help="check accuracy, time and record benchmarks")
    run.add_argument("names", nargs="*", help="benchmark names, families or glob patterns (default: all)")
    _add_row_selection(run)
    run.add_argument("--timer", choices=TIMERS, help="events (default on a GPU), graph, or cpu (the CPU's only timer)")
    run.add_argument("--warmup", type=_positive(float), default=0.2, help="warm-up budget per row, seconds")
    run.add_argument("--budget", type=_positive(float), default=1.0, help="measurement budget per row, seconds")
    run.add_argument("--min-reps", type=_positive(int), default=5, help="fewest timed calls per row")
    run.add_argument("--max-reps", type=_positive(int), default=500, help="most timed calls per row")
    run.add_argument("--seeds", type=_positive(int), default=3, help="fresh inputs for the accuracy check")
    run.add_argument("--out", type=Path, default=DEFAULT_RUNS_DIR, help="folder (or .json path) for the record")
    run.add_argument("--baseline", type=Path, help="compare against this run or baseline; exit 1 on regression")
    run.add_argument("--threshold", type=_fraction, default=DEFAULT_THRESHOLD, help="regression threshold (0.05 = 5%%)")

    compare = commands.add_parser("compare", help="compare two runs; exit 1 on regression or accuracy failure")
    compare.add_argument("old", type=Path, help="the earlier run or a committed baseline")
    compare.add_argument("new", type=Path, help="the run to check")
    compare.add_argument("--threshold", type=_fraction, default=DEFAULT_THRESHOLD, help="regression threshold (0.05 = 5%%)")
    compare.add_argument("--alpha", type=_fraction, default=DEFAULT_ALPHA, help="significance level of the rank test")

    env = commands.add_parser("env", help="device, versions and measured ceilings")
    env.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    env.add_argument("--dtype", action="append", choices=sorted(DTYPES), default=[],
                     help="matmul dtype for the ceiling (repeatable)")
    env.add_argument("--remeasure", action="store_true", help="measure the ceilings again instead of using the cache")
    study = commands.add_parser("study", help="studies on real models (sinks: windowed attention in MiniLM)")
    study.add_argument("study", choices=["sinks"], help="which study")
    study.add_argument("--windows", type=_window_list, default=[2, 4, 8, 16, 32, 64],
                       help="comma-separated windows (keys each side), e.g. 2,8,32")
    study.add_argument("--sinks", type=_window_list, default=[0, 1], help="comma-separated sink counts")
    study.add_argument("--texts", type=_positive(int), default=16, help="paragraphs of real text to embed")
    study.add_argument("--max-tokens", type=_positive(int), default=256, help="truncate paragraphs to this length")
    study.add_argument("--backend", choices=["triton", "reference"],
                       help="attention used inside the model (default: triton on a GPU, reference on the CPU)")
    study.add_argument("--out", type=Path, default=Path("results") / "studies" / "sinks",
                       help="folder for sinks.json and sinks.png")

    prof = commands.add_parser("profile", help="run rows under torch.profiler: TensorBoard traces, top-ops table")
    prof.add_argument("names", nargs="+", help="benchmark names, families or glob patterns")
    _add_row_selection(prof)
    prof.add_argument("--steps", type=_positive(int), default=3, help="profiled calls per row, after one warm-up call")
    prof.add_argument("--top", type=_positive(int), default=10, help="operators shown per row, by self time")
    prof.add_argument("--out", type=Path, default=DEFAULT_PROFILES_DIR,
                      help="TensorBoard log folder; each profile is a new run folder inside it")

    rep = commands.add_parser("report", help="PNG plots, a self-contained HTML page and a Markdown table of a run")
    rep.add_argument("run", type=Path, help="a run record (results/runs/*.json) or a baseline")
    rep.add_argument("--baseline", type=Path, help="also compare the run against this run or baseline")
    rep.add_argument("--threshold", type=_fraction, default=DEFAULT_THRESHOLD, help="regression threshold (0.05 = 5%%)")
    rep.add_argument("--out", type=Path, help="folder for the report (default: results/reports/<run file name>)")
    comp = commands.add_parser("compile", help="compile every Triton (and CUDA C) kernel for GPU architectures, "
                                               "no GPU needed: registers, spills, shared memory, tensor cores")
    comp.add_argument("names", nargs="*", help="benchmark names, families or glob patterns (default: all)")
    comp.add_argument("--arch", default=",".join(DEFAULT_ARCHS),
                      help=f"comma-separated architectures, of {', '.join(ARCHS)} (default: %(default)s)")
    comp.add_argument("--size", choices=registry.SIZES, default="small", help="size preset whose cases are compiled")
    comp.add_argument("--dtype", action="append", choices=sorted(DTYPES), default=[],
                      help="dtype (repeatable; default: every dtype each benchmark claims)")
    comp.add_argument("--mode", action="append", choices=registry.MODES, default=[],
                      help="mode (repeatable; default: every mode the benchmark declares)")
    comp.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                      help="import MODULE (from the current folder or installed) first: it may register more benchmarks")
    comp.add_argument("--jobs", type=_positive(int), help="architectures compiled at once (default: one per core)")
    comp.add_argument("--all", action="store_true", help="list every configuration, not one line per kernel")
    comp.add_argument("--out", type=Path, default=Path("results") / "compile",
                      help="folder (or .json path) for the record")
    hist = commands.add_parser("history", help="each row's median over commits from stored runs, with change points")
    hist.add_argument("names", nargs="*", help="benchmark names, families or glob patterns (default: all stored)")
    hist.add_argument("--store", action="append", type=Path, default=[],
                      help="folder of run records, searched recursively (repeatable; default: whichever of "
                           "results/history, results/baselines and results/runs exist)")
    hist.add_argument("--device", help="device name as recorded (default: that of the most recent run)")
    hist.add_argument("--size", choices=registry.SIZES, help="size preset (default: that of the most recent run)")
    hist.add_argument("--timer", choices=TIMERS, help="timer (default: that of the most recent run)")
    for option in ("case", "impl", "dtype", "mode"):
        hist.add_argument(f"--{option}", help=f"glob on the {option}")
    hist.add_argument("--threshold", type=_fraction, default=None,
                      help="smallest step reported as a change point (default 0.05 = 5%%)")
    hist.add_argument("--cache-dir", type=Path, help="folder for the SQLite indexes (default: inside each store)")
    hist.add_argument("--plot", type=Path, help="also write the series as a PNG plot")
    train = commands.add_parser("train", help="training loops: resnet (MLPerf style), sae (TopK sparse autoencoder)")
    train_commands = train.add_subparsers(dest="train_command", required=True, metavar="MODEL")
    _add_resnet_commands(commands, train_commands)
    _add_sae_commands(commands, train_commands)
    return parser


def _window_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def _device(text: str | None) -> torch.device:
    try:
        return parse_device(text) if text else default_device()
    except ValueError as error:
        raise UsageError(str(error)) from None


def _select(names: list[str]) -> list[registry.Benchmark]:
    try:
        return registry.select(names)
    except ValueError as error:
        raise UsageError(str(error)) from None


def cmd_list(args) -> int:
    table = Table(title="menagerie benchmarks")
    for column in ("benchmark", "modes", "dtypes", "implementations", "cases"):
        table.add_column(column)
    for bench in _select(args.names):
        sizes = [args.size] if args.size else list(registry.SIZES)
        cases = "\n".join(
            f"{size}: {', '.join(case.name for case in bench.cases.get(size, ())) or '-'}" for size in sizes
        )
        impls = "\n".join(f"{impl.name} ({impl.role})" for impl in bench.impls)
        dtypes = ", ".join(runner.dtype_name(dtype) for dtype in bench.dtypes)
        table.add_row(bench.name, ", ".join(bench.modes), dtypes, impls, cases)
    console.print(table)
    return 0


def print_run_table(record: dict) -> None:
    prov = record["provenance"]
    console.print(f"[bold]{prov['device']}[/] · torch {prov['torch']} · triton {prov['triton']} · "
                  f"size {record['config']['size']} · timer {record['config']['timer']}")
    notes = []
    for bench in dict.fromkeys(row["benchmark"] for row in record["rows"]):
        table = Table(title=bench, title_justify="left")
        for column in ("case dtype mode", "impl", "median", "95% CI", "× ref", "TFLOP/s", "GB/s", "% roof",
                       "max err", "status"):
            table.add_column(column, justify="left" if column in ("case dtype mode", "impl", "status") else "right")
        for row in (row for row in record["rows"] if row["benchmark"] == bench):
            stats, metrics, acc = row["stats"], row["metrics"], row["accuracy"]
            status = {"ok": "[green]ok", "accuracy_failed": "[red]ACCURACY", "error": "[red]ERROR",
                      "skipped": "[yellow]skipped"}[row["status"]]
            if row["reason"]:
                notes.append(f"{bench} {row['case']} {row['dtype']} {row['mode']} {row['impl']}: {row['reason']}")
                status += f" [{len(notes)}]"
            table.add_row(
                f"{row['case']} {row['dtype']} {row['mode']}", row["impl"],
                format_seconds(stats and stats["median_s"]),
                f"{format_seconds(stats['ci95_s'][0])}–{format_seconds(stats['ci95_s'][1])}" if stats else "-",
                format_number(metrics["speedup_vs_reference"], ".3g"), format_number(metrics["tflops"], ".3g"),
                format_number(metrics["gbps"], ".3g"), format_number(metrics["roofline_pct"], ".1f"),
                format_number(acc and acc["max_abs_err"], ".1e"), status,
            )
        console.print(table)
    for number, note in enumerate(notes, 1):
        console.print(f"[{number}] {note}", markup=False, highlight=False)


def print_comparison(comparison: Comparison) -> None:
    table = Table(title=f"comparison (regression: slower by > {comparison.threshold:.0%} "
                        f"and one-sided Mann-Whitney p < {comparison.alpha:g})")
    for column in ("benchmark", "case", "impl", "dtype", "mode", "old", "new", "new/old", "95% CI", "p", "verdict"):
        table.add_column(column, overflow="fold")
    colours = {"regression": "red", "accuracy_failed": "red", "error": "red", "improvement": "green",
               "unchanged": "white", "new": "cyan", "missing": "yellow", "skipped": "yellow"}
    for row in comparison.rows:
        verdict = f"[{colours[row.verdict]}]{row.verdict}"
        if row.detail:
            verdict += f"[/] {row.detail}"
        table.add_row(
            *row.key, format_seconds(row.old_median_s), format_seconds(row.new_median_s),
            format_number(row.ratio, ".3f"), f"{row.ci95[0]:.3f} – {row.ci95[1]:.3f}" if row.ci95 else "-",
            format_number(row.p_value, ".2g"), verdict,
        )
    console.print(table)
    failures = comparison.failures
    if failures:
        console.print(f"[red]{len(failures)} failing row(s): " + ", ".join(sorted({f.verdict for f in failures})))
    else:
        console.print("[green]no regression")


def _load(path: Path) -> dict:
    try:
        return load_run(path)
    except ResultError as error:
        raise UsageError(str(error)) from None


def _selected_rows(args, device, **settings) -> runner.RunConfig:
    """The run configuration of the rows chosen by ``_add_row_selection``'s options."""
    return runner.RunConfig(
        size=args.size or ("small" if device.type == "cuda" else "tiny"),
        device=device,
        dtypes=tuple(dict.fromkeys(DTYPES[name] for name in args.dtype)),
        modes=tuple(dict.fromkeys(args.mode)),
        cases=tuple(args.case),
        impls=tuple(args.impl),
        **settings,
    )


def cmd_run(args) -> int:
    device = _device(args.device)
    timer = args.timer or ("events" if device.type == "cuda" else "cpu")
    if (device.type == "cpu") != (timer == "cpu"):
        raise UsageError(f"--timer {timer} does not work on {device.type}: use 'cpu' on the CPU, "
                         "'events' or 'graph' on a GPU")
    if args.min_reps > args.max_reps:
        raise UsageError(f"--min-reps {args.min_reps} is larger than --max-reps {args.max_reps}")
    baseline = _load(args.baseline) if args.baseline else None
    config = _selected_rows(
        args, device, timer=timer, seeds=args.seeds,
        budget=Budget(warmup_s=args.warmup, measure_s=args.budget, min_reps=args.min_reps, max_reps=args.max_reps))
    benchmarks = _select(args.names)
    tasks = runner.plan(benchmarks, config)
    if not tasks:
        raise UsageError("nothing to run: no case, dtype and mode matches the filters "
                         f"(size {config.size}); see `menagerie list`")
    total = sum(len(task.impls) for task in tasks)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=errors, transient=True) as progress:
        bar = progress.add_task("measuring ceilings", total=total)
        record = runner.run(
            benchmarks, config,
            on_task=lambda task: progress.update(
                bar, description=f"{task.benchmark.name} {task.case.name} {runner.dtype_name(task.dtype)} {task.mode}"),
            on_row=lambda row: progress.advance(bar),
        )
    path = write_run(record, args.out)
    print_run_table(record)
    console.print(f"wrote {path}")
    failed = [row for row in record["rows"] if row["status"] in ("accuracy_failed", "error")]
    if failed:
        console.print(f"[red]{len(failed)} row(s) failed: accuracy or errors (see the status column)")
    if baseline is not None:
        comparison = compare_runs(baseline, record, threshold=args.threshold)
        print_comparison(comparison)
        return 1 if failed or not comparison.passed else 0
    return 1 if failed else 0


def cmd_compare(args) -> int:
    old, new = _load(args.old), _load(args.new)
    if args.alpha <= 0 or args.alpha >= 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {args.alpha}")
    comparison = compare_runs(old, new, threshold=args.threshold, alpha=args.alpha)
    print_comparison(comparison)
    return 0 if comparison.passed else 1


def cmd_env(args) -> int:
    device = _device(args.device)
    info = provenance.collect(device)
    table = Table(title="menagerie environment", show_header=False)
    for key in ("device", "cpu", "cpu_count", "platform", "python", "torch", "triton", "cuda", "driver"):
        table.add_row(key, str(info[key]))
    git = info["git"]
    table.add_row("source", f"{git['sha'] or 'not a git checkout'}{' (dirty)' if git['dirty'] else ''}")
    dtypes = [DTYPES[name] for name in args.dtype] or [torch.bfloat16 if device.type == "cuda" else torch.float32]
    for dtype in dict.fromkeys(dtypes):
        with console.status(f"measuring ceilings ({runner.dtype_name(dtype)})"):
            found = ceilings.get_ceilings(device, dtype, remeasure=args.remeasure)
        for name, ceiling in found.items():
            table.add_row(f"{name} ({runner.dtype_name(dtype)})" if name == "matmul_tflops" else name,
                          f"{ceiling.value:.4g} {ceiling.unit} [{ceiling.source}] {ceiling.detail}")
    table.add_row("ceilings cache", str(ceilings.cache_path()))
    console.print(table)
    return 0


def cmd_study(args) -> int:
    import dataclasses
    import json

    from models import minilm_sinks

    backend = args.backend or ("triton" if torch.cuda.is_available() else "reference")
    try:
        with console.status("sink study: loading all-MiniLM-L6-v2") as status:
            study = minilm_sinks.run_study(windows=args.windows, sinks=args.sinks, texts=args.texts,
                                           max_tokens=args.max_tokens, backend=backend,
                                           progress=lambda message: status.update(f"sink study: {message}"))
    except RuntimeError as error:
        raise UsageError(str(error)) from None
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"provenance": provenance.collect(default_device()), "study": dataclasses.asdict(study)}
    (args.out / "sinks.json").write_text(json.dumps(record, indent=1) + "\n")
    plot = minilm_sinks.plot_study(study, args.out / "sinks.png")

    table = Table(title=f"all-MiniLM-L6-v2: cosine similarity of windowed to dense embeddings "
                        f"({study.texts} paragraphs, mean {study.tokens_mean:.0f} tokens, {backend} attention)")
    table.add_column("window", justify="right")
    for key in study.cosine_mean:
        table.add_column(f"{key} mean", justify="right")
        table.add_column(f"{key} min", justify="right")
    for index, window in enumerate(study.windows):
        cells = []
        for key in study.cosine_mean:
            cells += [f"{study.cosine_mean[key][index]:.4f}", f"{study.cosine_min[key][index]:.4f}"]
        table.add_row(str(window), *cells)
    console.print(table)
    shares = Table(title="dense model: mean attention probability on token 0 ([CLS]) per layer")
    shares.add_column("layer", justify="right")
    shares.add_column("share on token 0", justify="right")
    shares.add_column("uniform share", justify="right")
    for layer, share in enumerate(study.first_token_share, 1):
        shares.add_row(str(layer), f"{share:.3f}", f"{study.uniform_share:.3f}")
    console.print(shares)
    console.print(f"wrote {args.out / 'sinks.json'} and {plot}")
    return 0


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
        console.print(f"[bold]{row.label}[/]: top operators by self {'CUDA' if on_cuda else 'CPU'} time",
                      highlight=False)
        table = Table()
        table.add_column("operator", overflow="fold")
        for column in ("calls", "self CPU", "CPU total") + (("self CUDA",) if on_cuda else ()) + ("self CPU mem",):
            table.add_column(column, justify="right")
        for op in row.ops:
            device_cells = (format_seconds(op.self_device_s),) if on_cuda else ()
            table.add_row(op.name, str(op.calls), format_seconds(op.self_cpu_s), format_seconds(op.cpu_total_s),
                          *device_cells, f"{op.self_cpu_memory_bytes / 2**20:.3g} MiB")
        console.print(table)


def cmd_profile(args) -> int:
    device = _device(args.device)
    # The timer is unused: profiling does not time.
    config = _selected_rows(args, device, timer="events" if device.type == "cuda" else "cpu")
    benchmarks = _select(args.names)
    tasks = runner.plan(benchmarks, config)
    if not tasks or not any(task.impls for task in tasks):
        raise UsageError("nothing to profile: no case, implementation, dtype and mode matches the filters "
                         f"(size {config.size}); see `menagerie list`")
    run_dir = new_run_dir(args.out, benchmarks)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=errors, transient=True) as progress:
        bar = progress.add_task("profiling", total=sum(len(task.impls) for task in tasks))
        rows = profile(tasks, device, run_dir, steps=args.steps, top=args.top,
                       on_row=lambda row: progress.update(bar, advance=1, description=f"profiled {row.label}"))
    print_profile(rows, device)
    console.print(f"wrote traces to {run_dir}\nview them with: tensorboard --logdir {args.out}")
    failed = [row for row in rows if row.status == "error"]
    if failed:
        console.print(f"[red]{len(failed)} row(s) crashed (see the reason column)")
    return 1 if failed else 0


def cmd_report(args) -> int:
    try:
        from harness import report
    except ImportError as error:
        raise UsageError(f"reports need matplotlib ({error}); install it with: "
                         "pip install 'menagerie[report]'") from None
    record = _load(args.run)
    baseline = _load(args.baseline) if args.baseline else None
    out = args.out or Path("results") / "reports" / args.run.stem
    with console.status(f"rendering the report of {args.run}"):
        try:
            files = report.build_report(record, out, baseline, threshold=args.threshold)
        except report.ReportError as error:
            raise UsageError(f"{args.run}: {error}") from None
    table = Table(title=f"report of {args.run} ({len(record['rows'])} rows)", title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("what")
    table.add_row(str(files.html), "self-contained page: provenance, ceilings, plots, every row"
                  + (", comparison with the baseline" if baseline else ""))
    table.add_row(str(files.markdown), "Markdown tables for a README")
    for name, path in files.plots.items():
        table.add_row(str(path), f"{name} plot")
    console.print(table)
    return 0


def print_compile_report(report, show_all: bool) -> None:
    from harness.compile_check import chosen_build, specialization_label

    table = Table(title="compiled kernels" + ("" if show_all else
                                              " (one line per kernel and specialization: the configuration an "
                                              "autotuner would pick here, and how many of its configurations "
                                              "are spill-free)"), title_justify="left")
    for column in ("arch", "kernel", "specialization", "config", "spill-free", "regs", "stack B", "shared KiB",
                   "tensor cores", "occupancy", "status"):
        table.add_column(column, justify="right" if column in ("regs", "stack B", "shared KiB", "occupancy",
                                                                "spill-free") else "left", overflow="fold")
    for members in report.groups.values():
        builds = [report.builds[i] for i in members]
        spill_free = sum(1 for b in builds if b["spills"] is False and not b["error"])
        shown = builds if show_all else [chosen_build(builds) or builds[0]]
        for build in shown:
            status = ("[red]" + escape(build["error"])) if build["error"] else (
                "[yellow]spills" if build["spills"] else "[green]ok")
            table.add_row(build["arch"], build["kernel"], specialization_label(build["specialization"]),
                          " ".join(f"{k}={v}" for k, v in build["config"].items()), f"{spill_free}/{len(builds)}",
                          format_number(build["registers"], "d"), format_number(build["stack_bytes"], "d"),
                          format_number(build["shared_bytes"] / 1024, ".1f"),
                          ", ".join(build["tensor_core_ops"]) or "-",
                          "-" if build["occupancy"] is None else f"{100 * build['occupancy']:.0f}%", status)
    console.print(table)


def cmd_compile(args) -> int:
    import importlib
    import time

    from harness import compile_check

    try:
        archs = parse_archs(args.arch)
    except ValueError as error:
        raise UsageError(f"--arch: {error}") from None
    if args.imports and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: modules of the current folder
    for module in args.imports:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise UsageError(f"--import {module}: {error}") from None
    benchmarks = _select(args.names)
    dtypes = [runner.dtype_name(DTYPES[name]) for name in args.dtype]
    names = [bench.name for bench in benchmarks] if args.names else []
    started = time.monotonic()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=errors, transient=True) as progress:
        bars = {arch.name: progress.add_task(f"{arch.name}: starting", total=None) for arch in archs}
        report = compile_check.check(
            names, archs, args.size, dtypes, list(args.mode), args.imports, args.jobs,
            on_progress=lambda arch, done, total, row: progress.update(
                bars[arch], completed=done, total=total, description=f"{arch}: {row}"))
    seconds = time.monotonic() - started
    print_compile_report(report, args.all)
    record = {"provenance": provenance.collect(torch.device("cpu")),
              "config": {"archs": [arch.name for arch in archs], "size": args.size, "names": args.names,
                         "dtypes": dtypes, "modes": args.mode, "imports": args.imports, "seconds": round(seconds, 1)},
              **report.to_dict()}
    out = args.out if args.out.suffix == ".json" else args.out / (
        f"compile-{'-'.join(arch.name for arch in archs)}-{args.size}-triton{record['provenance']['triton']}.json")
    write_json_atomically(record, out)
    console.print(f"{len(report.builds)} builds of {len(report.groups)} kernel specializations for "
                  f"{', '.join(arch.name for arch in archs)} in {seconds:.0f} s; wrote {out}")
    for failure in report.failures:
        console.print(f"[red]FAIL[/] {escape(failure)}", highlight=False)
    if report.failures:
        console.print(f"[red]{len(report.failures)} failure(s)")
        return 1
    console.print("[green]every kernel compiled, within the limits, with a spill-free configuration")
    return 0


def cmd_history(args) -> int:
    from harness import history

    stores = args.store or [path for path in (Path("results") / name for name in ("history", "baselines", "runs"))
                            if path.is_dir()]
    if not stores:
        raise UsageError("no run records to read: give --store DIR (results/history, results/baselines and "
                         "results/runs do not exist here)")
    filters = {name: getattr(args, name) for name in ("case", "impl", "dtype", "mode")}
    try:
        with history.Store(stores, cache_dir=args.cache_dir) as store:
            found = history.query(store, args.names, device=args.device, size=args.size, timer=args.timer,
                                  threshold=history.DEFAULT_THRESHOLD if args.threshold is None else args.threshold,
                                  **filters)
    except history.HistoryError as error:
        raise UsageError(str(error)) from None
    for warning in found.warnings:
        errors.print(f"warning: {warning}", markup=False, highlight=False)
    if not found.series:
        console.print(f"no timed rows on {found.device} (size {found.size}, timer {found.timer}) match")
        return 1
    table = Table(title=f"history on {found.device} · size {found.size} · timer {found.timer} "
                        f"({len(found.commits)} commits, oldest first; medians)", title_justify="left")
    table.add_column("row", overflow="fold")
    for commit in found.commits:
        table.add_column(commit.label, justify="right")
    steps = []
    by_label = {commit.label: index for index, commit in enumerate(found.commits)}
    for key, points in history.table(found).items():
        cells = ["-"] * len(found.commits)
        for label, _timestamp, median, marker in points:
            cells[by_label[label]] = format_seconds(median) + (" ◆" if marker else "")
            if marker:
                steps.append((" ".join(key), label, marker))
        table.add_row(" ".join(key), *cells)
    console.print(table)
    for row, label, marker in steps:
        console.print(f"◆ {row}: {marker} from commit {label}", markup=False, highlight=False)
    if not steps:
        console.print("no change point")
    if args.plot:
        try:
            path = history.plot(found, args.plot)
        except ImportError as error:
            raise UsageError(f"plots need matplotlib ({error}); install it with: pip install 'menagerie[report]'") from None
        console.print(f"wrote {path}")
    return 0


def _add_sae_commands(commands, train_commands) -> None:
    """``activations`` and ``train sae``: activation datasets from any model, and SAE training."""
    acts = commands.add_parser("activations", help="hook a model's layer and write its activations as shards")
    acts.add_argument("--model", default="minilm",
                      help="'minilm' (all-MiniLM-L6-v2, shipped offline) or 'package.module:function' returning "
                           "a torch.nn.Module or a (module, tokenizer) pair")
    acts.add_argument("--layer", default="encoder.layer.3", help="name of the submodule to hook (model.named_modules())")
    source = acts.add_mutually_exclusive_group()
    source.add_argument("--text", type=Path, help="a UTF-8 text file, one paragraph per blank-line-separated block "
                                                  "(default: the Python language reference shipped with Python)")
    source.add_argument("--tensors", type=Path, help="model inputs saved with torch.save (or .npy), batched along dim 0")
    acts.add_argument("--out", type=Path, required=True, help="folder for the shards and manifest.json (must be new)")
    acts.add_argument("--batch-size", type=_positive(int), default=32, help="inputs per forward")
    acts.add_argument("--max-tokens", type=_positive(int), default=256, help="truncate texts to this many tokens")
    acts.add_argument("--max-rows", type=_positive(int), help="stop after this many activation rows")
    acts.add_argument("--shard-rows", type=_positive(int), default=65536, help="rows per shard file")
    acts.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32", help="storage dtype")
    acts.add_argument("--device", help="cpu or cuda (default: cuda when available)")

    sae = train_commands.add_parser("sae", help="train a TopK sparse autoencoder on an activation dataset")
    sae.add_argument("--activations", type=Path, required=True, help="folder written by 'menagerie activations'")
    sae.add_argument("--latents", type=_positive(int), default=None, help="dictionary size M (default: 8 x d)")
    sae.add_argument("--k", type=_positive(int), default=32, help="active latents per token")
    sae.add_argument("--steps", type=_positive(int), default=1000, help="training batches")
    sae.add_argument("--batch-size", type=_positive(int), default=4096, help="tokens per batch")
    sae.add_argument("--lr", type=_positive(float), help="Adam learning rate (default: 2e-4 / sqrt(M / 2^14))")
    sae.add_argument("--warmup-steps", type=_positive(int), default=100, help="linear LR warm-up")
    sae.add_argument("--no-auxk", action="store_true", help="train without the AuxK loss on dead latents")
    sae.add_argument("--dead-after-tokens", type=_positive(int), default=10_000_000,
                     help="a latent that has not fired for this many tokens is dead")
    sae.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help="parameter dtype (default: bf16 on a GPU, "
                                                                         "fp32 on the CPU)")
    sae.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    sae.add_argument("--seed", type=int, default=0)
    sae.add_argument("--out", type=Path, default=Path("results") / "train", help="folder for the run record")


def cmd_activations(args) -> int:
    from models import activation_sources
    from models.activations import collect_activations

    device = parse_device(args.device) if args.device else default_device()
    try:
        with console.status(f"loading {args.model}"):
            model, tokenizer = activation_sources.load_model(args.model)
        model.to(device)
        if args.tensors:
            batches = activation_sources.tensor_batches(args.tensors, args.batch_size)
        else:
            if tokenizer is None:
                raise UsageError(f"{args.model} returned no tokenizer: give --tensors, or return (module, tokenizer)")
            if args.text:
                if not args.text.is_file():
                    raise UsageError(f"--text: no such file {args.text}")
                texts = [block.strip() for block in args.text.read_text().split("\n\n") if block.strip()]
            else:
                texts = activation_sources.python_docs_paragraphs()
            if not texts:
                raise UsageError("the text has no paragraphs")
            batches = activation_sources.text_batches(tokenizer, texts, args.batch_size, args.max_tokens)
        with Progress(TextColumn("activations"), TextColumn("{task.completed:,} rows"), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("rows", total=None)
            manifest = collect_activations(
                model, args.layer, batches, args.out, model_name=args.model,
                dtype=torch.float16 if args.dtype == "fp16" else torch.float32, shard_rows=args.shard_rows,
                max_rows=args.max_rows, on_batch=lambda rows: progress.update(task, completed=rows))
    except (ValueError, FileExistsError, TypeError) as error:
        raise UsageError(str(error)) from None
    console.print(f"wrote {manifest.count:,} rows of {manifest.layer} ({manifest.dim} wide, {manifest.dtype}) "
                  f"in {len(manifest.shards)} shard(s) to {args.out}")
    return 0


def cmd_train_sae(args) -> int:
    import dataclasses

    from harness.results import write_json_atomically
    from models.activations import ActivationDataset, ActivationDatasetError
    from models.sae import TrainConfig, train_sae

    device = parse_device(args.device) if args.device else default_device()
    dtype = DTYPES[args.dtype] if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    try:
        dataset = ActivationDataset(args.activations)
        latents = args.latents or 8 * dataset.dim
        if args.k > latents:
            raise UsageError(f"--k {args.k} exceeds the number of latents {latents}")
        config = TrainConfig(latents=latents, k=args.k, batch_size=args.batch_size, steps=args.steps, lr=args.lr,
                             warmup_steps=args.warmup_steps, auxk=not args.no_auxk,
                             dead_after_tokens=args.dead_after_tokens, seed=args.seed)
    except ActivationDatasetError as error:
        raise UsageError(str(error)) from None
    columns = (TextColumn("train sae"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[metrics]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("steps", total=config.steps, metrics="")
        _, result = train_sae(dataset, config, device, dtype, on_step=lambda record: progress.update(
            task, completed=record["step"],
            metrics=f"FVU {record['fvu']:.3f}  L0 {record['l0']:.1f}  dead {record['dead_fraction']:.1%}"))
    record = {"kind": "sae_training", "provenance": provenance.collect(device),
              "dataset": dataclasses.asdict(dataset.manifest) | {"folder": str(args.activations)},
              "dtype": runner.dtype_name(dtype), "result": dataclasses.asdict(result)}
    stamp = record["provenance"]["timestamp"].split("+")[0].replace("-", "").replace(":", "")
    path = write_json_atomically(record, args.out / f"{stamp}_sae_m{latents}_k{args.k}.json")
    table = Table(title=f"TopK SAE on {dataset.manifest.model} {dataset.manifest.layer} "
                        f"({record['provenance']['device']}, {runner.dtype_name(dtype)})")
    for column in ("tokens", "tokens/s", "FVU first", "FVU final", "L0", "dead"):
        table.add_column(column, justify="right")
    table.add_row(f"{result.tokens:,}", f"{result.tokens_per_s:,.0f}", f"{result.fvu_first:.4f}",
                  f"{result.fvu_final:.4f}", f"{result.l0_final:.1f}", f"{result.dead_fraction_final:.1%}")
    console.print(table)
    console.print(f"wrote {path}")
    return 0


def _add_resnet_commands(commands, train_commands) -> None:
    """``data``, ``train resnet`` and ``mlperf``: the ResNet training part of the suite."""
    from models.data.loaders import LOADERS
    from models.resnet import ARCHS
    from models.train_resnet import MODES, OPTIMIZERS

    data = commands.add_parser("data", help="datasets: synthetic or digits image folders, FFCV conversion, loader speed")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    synth = data_commands.add_parser("synth", help="write a synthetic JPEG dataset: OUT/train and OUT/val image folders")
    synth.add_argument("out", type=Path, help="dataset root to create")
    synth.add_argument("--classes", type=_positive(int), default=10, help="number of classes")
    synth.add_argument("--train-per-class", type=_positive(int), default=100, help="training images per class")
    synth.add_argument("--val-per-class", type=_positive(int), default=20, help="validation images per class")
    synth.add_argument("--size", type=_positive(int), default=256, help="image side, pixels")
    synth.add_argument("--seed", type=int, default=0, help="random seed")
    digits = data_commands.add_parser("digits", help="write scikit-learn's 8x8 digits, upsampled, as OUT/train and OUT/val")
    digits.add_argument("out", type=Path, help="dataset root to create")
    digits.add_argument("--size", type=_positive(int), default=16, help="image side after upsampling, pixels")
    to_ffcv = data_commands.add_parser("to-ffcv", help="convert an image folder to an FFCV .beton file")
    to_ffcv.add_argument("image_folder", type=Path, help="ROOT/<class>/<image> folder")
    to_ffcv.add_argument("out", type=Path, help="the .beton file to write")
    to_ffcv.add_argument("--max-resolution", type=_positive(int), help="cap the longer image side (default: keep)")
    to_ffcv.add_argument("--jpeg-quality", type=_positive(int), default=90, help="JPEG quality of the stored images")
    to_ffcv.add_argument("--workers", type=_positive(int), default=4, help="writer processes")
    speed = data_commands.add_parser("throughput", help="img/s of the loaders on ROOT/train (and ROOT/train.beton)")
    speed.add_argument("root", type=Path, help="dataset root holding train/ and train.beton")
    speed.add_argument("--loader", action="append", choices=LOADERS, default=[], help="loader (repeatable; default all)")
    speed.add_argument("--size", action="append", type=_positive(int), default=[],
                       help="output image side (repeatable; default 224 and 32)")
    speed.add_argument("--batch-size", type=_positive(int), default=256, help="images per batch")
    speed.add_argument("--workers", type=_positive(int), default=4, help="worker processes or threads per loader")
    speed.add_argument("--batches", type=_positive(int), default=50, help="timed batches per loader and size")
    speed.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    speed.add_argument("--out", type=Path, default=Path("results") / "loaders", help="folder for the record")

    resnet = train_commands.add_parser("resnet", help="train a ResNet with the MLPerf recipe (torchrun for DDP)")
    resnet.add_argument("--data", type=Path, required=True, help="root with train/ and val/ (or train.beton, val.beton)")
    resnet.add_argument("--arch", choices=list(ARCHS), default="resnet50")
    resnet.add_argument("--loader", choices=LOADERS, default="dali")
    resnet.add_argument("--epochs", type=_positive(int), default=40, help="most epochs (stops early at the target)")
    resnet.add_argument("--batch-size", type=_positive(int), default=256, help="images per step per process")
    resnet.add_argument("--accumulation", type=_positive(int), default=1, help="micro-batches per step")
    resnet.add_argument("--optimizer", choices=OPTIMIZERS, default="lars")
    resnet.add_argument("--lr", type=_positive(float), help="peak learning rate (default: scaled to the global batch)")
    resnet.add_argument("--warmup-epochs", type=_fraction, default=2.0, help="linear warm-up, epochs")
    resnet.add_argument("--weight-decay", type=_fraction, default=5e-5, help="on convolution and linear weights only")
    resnet.add_argument("--momentum", type=_fraction, default=0.9)
    resnet.add_argument("--label-smoothing", type=_fraction, default=0.1)
    resnet.add_argument("--eval-every", type=_positive(int), default=4, help="epochs between evaluations")
    resnet.add_argument("--target", type=_positive(float), default=0.759, help="stop at this top-1")
    resnet.add_argument("--image-size", type=_positive(int), default=224, help="training and evaluation image side")
    resnet.add_argument("--min-scale", type=_positive(float), default=0.08, help="smallest random-crop area fraction")
    resnet.add_argument("--no-augment", action="store_true", help="train on centre crops (no random crop or flip)")
    resnet.add_argument("--workers", type=_positive(int), default=4, help="loader workers per process")
    resnet.add_argument("--seed", type=int, default=0)
    resnet.add_argument("--mode", choices=MODES, default="optimized",
                        help="optimized (channels_last, bf16 autocast on GPUs) or reference (eager fp32)")
    resnet.add_argument("--compile", action="store_true", help="torch.compile the model (optimized mode)")
    resnet.add_argument("--mllog", type=Path, help="MLPerf log to write (default: OUT/<run>.mllog)")
    resnet.add_argument("--out", type=Path, default=Path("results") / "train", help="folder for the run record")

    check = commands.add_parser("mlperf", help="check MLPerf logs (ruleset 4.0.0), time to train, compare with MLPerf v4.0")
    check.add_argument("logs", nargs="+", type=Path, help="MLLOG files, one per run (5 for an olympic mean)")
    check.add_argument("--out", type=Path, default=Path("results") / "mlperf",
                       help="folder for the compliance checker's reports")


def _write_record(record: dict, folder: Path, stem: str) -> Path:
    import datetime
    import json

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}-{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def cmd_data(args) -> int:
    from models.data import convert, folders

    try:
        if args.data_command == "synth":
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=errors, transient=True) as progress:
                for split, per_class, seed in (("train", args.train_per_class, args.seed),
                                               ("val", args.val_per_class, args.seed + 1)):
                    bar = progress.add_task(f"writing {split}", total=args.classes * per_class)
                    folders.write_synthetic(args.out / split, args.classes, per_class, args.size, seed=seed,
                                            progress=lambda done: progress.update(bar, completed=done))
            console.print(f"wrote {args.classes * (args.train_per_class + args.val_per_class)} images "
                          f"({args.size}x{args.size}, {args.classes} classes) under {args.out}/train and val")
        elif args.data_command == "digits":
            counts = folders.write_digits(args.out, size=args.size)
            console.print(f"wrote {counts[0]} training and {counts[1]} validation digits ({args.size}x{args.size}) "
                          f"under {args.out}")
        elif args.data_command == "to-ffcv":
            with console.status(f"writing {args.out}"):
                count = convert.to_ffcv(args.image_folder, args.out, max_resolution=args.max_resolution,
                                        jpeg_quality=args.jpeg_quality, workers=args.workers)
            console.print(f"wrote {count} images to {args.out}")
        else:
            return _data_throughput(args)
    except ValueError as error:  # includes DataError
        raise UsageError(str(error)) from None
    return 0


def _data_throughput(args) -> int:
    from benchmarks import loaders as loader_bench

    device = _device(args.device)
    chosen = args.loader or list(loader_bench.LOADERS)
    sizes = args.size or [224, 32]
    table = Table(title=f"loader throughput on {device} ({args.workers} workers, batch {args.batch_size})")
    for column in ("loader", "size", "batches", "img/s"):
        table.add_column(column, justify="left" if column == "loader" else "right")
    with console.status("measuring loaders") as status:
        results = loader_bench.measure(args.root, chosen, sizes, args.batch_size, args.workers, args.batches,
                                       device, on_result=lambda r: status.update(f"measured {r.loader} at {r.size}"))
    for result in results:
        table.add_row(result.loader, str(result.size), str(result.batches), f"{result.images_per_s:,.0f}")
    console.print(table)
    record = {"provenance": provenance.collect(device), "benchmark": "loaders.throughput",
              "config": {"root": str(args.root), "batch_size": args.batch_size, "workers": args.workers},
              "rows": [result.to_dict() for result in results]}
    console.print(f"wrote {_write_record(record, args.out, 'loaders')}")
    return 0


def cmd_train_resnet(args) -> int:
    import dataclasses

    from models import train_resnet

    run_name = f"resnet-{args.arch}-{args.loader}-{args.mode}"
    config = train_resnet.TrainConfig(
        data=args.data, arch=args.arch, loader=args.loader, epochs=args.epochs, batch_size=args.batch_size,
        accumulation=args.accumulation, optimizer=args.optimizer, lr=args.lr, warmup_epochs=args.warmup_epochs,
        momentum=args.momentum, weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
        eval_every=args.eval_every, target=args.target, image_size=args.image_size, min_scale=args.min_scale,
        augment=not args.no_augment, workers=args.workers, seed=args.seed, mode=args.mode, compile=args.compile,
        mllog=args.mllog or args.out / f"{run_name}.mllog",
    )
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=errors,
                      transient=True) as progress:
            bar = progress.add_task("preparing", total=1.0)
            result = train_resnet.train(config, progress=lambda text, done: progress.update(
                bar, description=text, completed=done))
    except ValueError as error:  # includes DataError
        raise UsageError(str(error)) from None
    if result.rank != 0:
        return 0
    table = Table(title=f"{args.arch} on {args.data} ({args.loader}, {args.mode}, {result.processes} process(es))")
    for column in ("epoch", "train loss", "top-1", "seconds", "img/s"):
        table.add_column(column, justify="right")
    accuracy = {evaluation["epoch"]: evaluation["top1"] for evaluation in result.evaluations}
    for epoch, (loss, seconds) in enumerate(zip(result.losses, result.epoch_seconds), 1):
        table.add_row(str(epoch), f"{loss:.4f}", format_number(accuracy.get(epoch), ".4f"), f"{seconds:.1f}",
                      f"{result.train_images_per_epoch / seconds:,.0f}")
    console.print(table)
    verdict = "reached" if result.reached_target else "did not reach"
    console.print(f"{verdict} top-1 {args.target} in {result.run_seconds / 60:.2f} min; MLLOG {config.mllog}")
    record = {"provenance": provenance.collect(default_device()), "benchmark": "resnet.time_to_accuracy",
              "result": dataclasses.asdict(result), "mllog": str(config.mllog)}
    console.print(f"wrote {_write_record(record, args.out, run_name)}")
    return 0


def cmd_mlperf(args) -> int:
    from models import mlperf

    table = Table(title=f"MLPerf Training ResNet-50 (compliance ruleset {mlperf.RULESET})")
    for column in ("log", "compliance", "status", "best top-1", "epochs", "minutes", "img/s", "img/s per accel."):
        table.add_column(column, justify="left" if column in ("log", "compliance", "status") else "right")
    args.out.mkdir(parents=True, exist_ok=True)
    scores, failed = [], []
    for log in args.logs:
        try:
            with console.status(f"checking {log}"):
                passed, report = mlperf.check_compliance(log, args.out / f"{log.stem}.compliance.log")
            score = mlperf.score(log)
        except mlperf.LogError as error:
            raise UsageError(str(error)) from None
        if not passed:
            failed.append(f"{log}: " + " | ".join(line for line in report.splitlines() if "ERROR" in line or "WARN" in line))
        scores.append(score)
        table.add_row(str(log), "[green]passed" if passed else "[red]FAILED", score.status, f"{score.best_accuracy:.4f}",
                      str(score.epochs), format_number(score.minutes, ".2f"), f"{score.img_per_s:,.0f}",
                      f"{score.img_per_s_per_accelerator:,.0f}")
    console.print(table)
    minutes = [score.minutes for score in scores if score.minutes is not None]
    if len(minutes) >= 3:
        our_minutes, how = mlperf.olympic_mean(minutes), f"olympic mean of {len(minutes)}"
    else:
        our_minutes, how = (minutes[0], "one run") if len(minutes) == 1 else (None, "no successful run")
    per_accelerator = max(score.img_per_s_per_accelerator for score in scores)
    published = mlperf.PUBLISHED
    versus = Table(title="against MLPerf Training v4.0 (published)")
    for column in ("", "time to train, minutes", "img/s per accelerator"):
        versus.add_column(column, justify="left" if not column else "right")
    versus.add_row(published["system"], f"{published['minutes']:.2f}", f"{published['img_per_s_per_accelerator']:,.0f}")
    versus.add_row(f"these logs ({scores[0].processes} process(es)): {how}", format_number(our_minutes, ".2f"),
                   f"{per_accelerator:,.0f}")
    versus.add_row("ours / published", format_number(our_minutes and our_minutes / published["minutes"], ".3g"),
                   f"{per_accelerator / published['img_per_s_per_accelerator']:.3g}")
    console.print(versus)
    if len(minutes) not in (0, 5):
        console.print(f"note: MLPerf scores ResNet over 5 runs; {len(minutes)} successful run(s) given")
    for line in failed:
        console.print(f"[red]compliance failed[/] {line}", highlight=False)
    return 1 if failed else 0


def cmd_train(args) -> int:
    return {"resnet": cmd_train_resnet, "sae": cmd_train_sae}[args.train_command](args)


COMMANDS = {"list": cmd_list, "run": cmd_run, "compile": cmd_compile, "history": cmd_history, "compare": cmd_compare, "env": cmd_env, "study": cmd_study,
            "profile": cmd_profile, "report": cmd_report, "data": cmd_data, "train": cmd_train, "activations": cmd_activations,
            "mlperf": cmd_mlperf}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as error:
        errors.print(f"menagerie {args.command}: error: {error}", markup=False, highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
