"""``menagerie compile``: compile every Triton (and CUDA C) kernel for GPU architectures without a GPU;
registers, spills, shared memory, tensor cores, occupancy."""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

import torch
from rich.markup import escape
from rich.table import Table

from harness import provenance, registry, runner
from harness.cli.common import DTYPES, UsageError, console, positive, progress_bar, select
from harness.formatting import format_number
from harness.gpu_archs import ARCHS, DEFAULT_ARCHS, parse_archs
from harness.results import write_json_atomically


def add_parser(commands) -> None:
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
    comp.add_argument("--jobs", type=positive(int), help="architectures compiled at once (default: one per core)")
    comp.add_argument("--all", action="store_true", help="list every configuration, not one line per kernel")
    comp.add_argument("--out", type=Path, default=Path("results") / "compile",
                      help="folder (or .json path) for the record")
    comp.set_defaults(func=cmd_compile)


def cmd_compile(args) -> int:
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
    benchmarks = select(args.names)
    dtypes = [runner.dtype_name(DTYPES[name]) for name in args.dtype]
    names = [bench.name for bench in benchmarks] if args.names else []
    started = time.monotonic()
    with progress_bar() as progress:
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
