"""``menagerie``: list, run, compare and describe the environment.

Exit codes: 0 success; 1 a regression, an accuracy failure or a crashed
implementation; 2 bad arguments or unreadable input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness import ceilings, provenance, registry, runner
from harness.compare import DEFAULT_ALPHA, DEFAULT_THRESHOLD, Comparison, compare_runs
from harness.device import default_device, parse_device
from harness.results import DEFAULT_RUNS_DIR, ResultError, load_run, write_run
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="menagerie", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list registered benchmarks, their cases and implementations")
    listing.add_argument("names", nargs="*", help="benchmark names, families or glob patterns")
    listing.add_argument("--size", choices=registry.SIZES, default=None, help="show only this preset's cases")

    run = commands.add_parser("run", help="check accuracy, time and record benchmarks")
    run.add_argument("names", nargs="*", help="benchmark names, families or glob patterns (default: all)")
    run.add_argument("--case", action="append", default=[], help="glob on case names (repeatable)")
    run.add_argument("--impl", action="append", default=[], help="glob on implementation names (repeatable)")
    run.add_argument("--size", choices=registry.SIZES, help="size preset (default: small on a GPU, tiny on the CPU)")
    run.add_argument("--dtype", action="append", choices=sorted(DTYPES), default=[],
                     help="dtype (repeatable; default: bf16 on a GPU, fp32 on the CPU)")
    run.add_argument("--mode", action="append", choices=registry.MODES, default=[],
                     help="mode (repeatable; default: every mode the benchmark declares)")
    run.add_argument("--device", help="cpu or cuda (default: cuda when available)")
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


def _format_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _format(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


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
                _format_time(stats and stats["median_s"]),
                f"{_format_time(stats['ci95_s'][0])}–{_format_time(stats['ci95_s'][1])}" if stats else "-",
                _format(metrics["speedup_vs_reference"], ".3g"), _format(metrics["tflops"], ".3g"),
                _format(metrics["gbps"], ".3g"), _format(metrics["roofline_pct"], ".1f"),
                _format(acc and acc["max_abs_err"], ".1e"), status,
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
            *row.key, _format_time(row.old_median_s), _format_time(row.new_median_s),
            _format(row.ratio, ".3f"), f"{row.ci95[0]:.3f} – {row.ci95[1]:.3f}" if row.ci95 else "-",
            _format(row.p_value, ".2g"), verdict,
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


def cmd_run(args) -> int:
    device = _device(args.device)
    timer = args.timer or ("events" if device.type == "cuda" else "cpu")
    if (device.type == "cpu") != (timer == "cpu"):
        raise UsageError(f"--timer {timer} does not work on {device.type}: use 'cpu' on the CPU, "
                         "'events' or 'graph' on a GPU")
    if args.min_reps > args.max_reps:
        raise UsageError(f"--min-reps {args.min_reps} is larger than --max-reps {args.max_reps}")
    baseline = _load(args.baseline) if args.baseline else None
    config = runner.RunConfig(
        size=args.size or ("small" if device.type == "cuda" else "tiny"),
        device=device,
        timer=timer,
        budget=Budget(warmup_s=args.warmup, measure_s=args.budget, min_reps=args.min_reps, max_reps=args.max_reps),
        seeds=args.seeds,
        dtypes=tuple(dict.fromkeys(DTYPES[name] for name in args.dtype)),
        modes=tuple(dict.fromkeys(args.mode)),
        cases=tuple(args.case),
        impls=tuple(args.impl),
    )
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


COMMANDS = {"list": cmd_list, "run": cmd_run, "compare": cmd_compare, "env": cmd_env, "study": cmd_study}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as error:
        errors.print(f"menagerie {args.command}: error: {error}", markup=False, highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
