"""``menagerie compile``: compile every Triton (and CUDA C) kernel for GPU architectures without a GPU;
registers, spills, shared memory, tensor cores, occupancy."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import os
import random
import sys
import time
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from menagerie.harness import compile_record, registry
from menagerie.harness.cli.common import UsageError, console, fraction, positive, progress_bar, select
from menagerie.harness.compile_diff import DEFAULT_MAX_OCCUPANCY_DROP
from menagerie.harness.compile_record import specialization_label
from menagerie.harness.formatting import format_number
from menagerie.harness.gpu_archs import ARCHS, DEFAULT_ARCHS, parse_archs
from menagerie.harness.results import write_json_atomically

# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "compile": "compile every Triton (and CUDA C) kernel for GPU architectures, "
    "no GPU needed: registers, spills, shared memory, tensor cores",
}


def add_parser(commands) -> None:
    comp = commands.add_parser("compile", help=COMMANDS["compile"])
    comp.add_argument("names", nargs="*", help="benchmark names, families or glob patterns (default: all)")
    comp.add_argument(
        "--arch",
        default=",".join(DEFAULT_ARCHS),
        help=f"comma-separated architectures, of {', '.join(ARCHS)} (default: %(default)s)",
    )
    comp.add_argument("--size", choices=registry.SIZES, default="small", help="size preset whose cases are compiled")
    comp.add_argument(
        "--dtype",
        action="append",
        choices=sorted(registry.DTYPES),
        default=[],
        help="dtype (repeatable; default: every dtype each benchmark claims)",
    )
    comp.add_argument(
        "--mode",
        action="append",
        choices=registry.MODES,
        default=[],
        help="mode (repeatable; default: every mode the benchmark declares)",
    )
    comp.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE (from the current folder or installed) first: it may register more benchmarks",
    )
    comp.add_argument("--jobs", type=positive(int), help="architectures compiled at once (default: one per core)")
    comp.add_argument("--all", action="store_true", help="list every configuration, not one line per kernel")
    comp.add_argument(
        "--out", type=Path, default=Path("results") / "compile", help="folder (or .json path) for this run's report"
    )
    record = comp.add_argument_group(
        "the compile record",
        "Units (kernel specialization x configuration x arch) whose fingerprint is in the record "
        "of this Triton version are replayed from it, not compiled; see harness/compile_record.py",
    )
    record.add_argument(
        "--record-dir",
        type=Path,
        default=default_record_dir(),
        help="root of the records, <root>/<triton version>/<arch>.json (default: %(default)s)",
    )
    record.add_argument("--full", action="store_true", help="compile every unit, ignoring the record")
    record.add_argument(
        "--update",
        action="store_true",
        help="write this run's units into the record (a run of the whole suite at the default "
        "size with no filter also drops the units the tree no longer has)",
    )
    record.add_argument(
        "--frozen",
        action="store_true",
        help="fail when the tree has units the record lacks (after compiling them): CI's mode",
    )
    record.add_argument(
        "--spot-check",
        type=fraction_of_one,
        default=0.03,
        metavar="FRACTION",
        help="share of the recorded units compiled again and compared, at least one per kernel; "
        "0 turns it off (default: %(default)s)",
    )
    record.add_argument("--seed", type=int, help="seed of the spot check's draw (default: random, printed)")
    diff = comp.add_argument_group(
        "the record against another commit's",
        "--diff compiles nothing: it compares the record under --record-dir "
        "with its version at a git ref, unit by unit; see "
        "harness/compile_diff.py",
    )
    diff.add_argument(
        "--diff",
        nargs="?",
        const="",
        metavar="REF",
        help="compare with the record at REF (default: the merge base with main); exit 1 on new "
        "spills, a weaker MMA class or an occupancy drop",
    )
    diff.add_argument(
        "--max-occupancy-drop",
        type=int,
        default=DEFAULT_MAX_OCCUPANCY_DROP,
        metavar="BLOCKS",
        help="resident blocks per SM a unit may lose (default: %(default)s)",
    )
    diff.add_argument(
        "--accept",
        action="append",
        default=[],
        metavar="PATTERN",
        help="a kernel name, or a glob over unit labels (kernel@version/arch [...] config), whose "
        "changes do not fail the diff (repeatable)",
    )
    comp.set_defaults(func=cmd_compile)


@contextlib.contextmanager
def current_folder_on_path(needed: bool):
    """The current folder first on ``sys.path`` for the block only: left there, it would make the checkout's
    folders importable under their bare names (``kernels``) for the rest of the process."""
    added = needed and "" not in sys.path and os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        yield
    finally:
        if added:
            sys.path.remove(os.getcwd())


def default_record_dir() -> Path:
    """The checkout's ``results/compile`` when running from a checkout, else ``results/compile`` here."""
    checkout = Path(__file__).resolve().parents[2] / compile_record.RECORD_DIR
    return checkout if checkout.is_dir() else compile_record.RECORD_DIR


def fraction_of_one(text: str) -> float:
    value = fraction(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def cmd_compile(args) -> int:
    if args.diff is not None:
        return cmd_diff(args)
    import torch

    from menagerie.harness import compile_check, provenance

    try:
        archs = parse_archs(args.arch)
    except ValueError as error:
        raise UsageError(f"--arch: {error}") from None
    with current_folder_on_path(bool(args.imports)):  # as `python -m` would: modules of the current folder
        for module in args.imports:
            try:
                importlib.import_module(module)
            except (ImportError, ValueError) as error:  # ValueError: an empty or relative name
                raise UsageError(f"--import {module!r}: {error}") from None
    benchmarks = select(args.names)
    dtypes = [registry.DTYPES[name] for name in args.dtype]
    names = [bench.name for bench in benchmarks] if args.names else []
    version = importlib.metadata.version("triton")  # not imported here: the kernels must be imported first
    records = {arch.name: compile_record.record_path(version, arch.name, args.record_dir) for arch in archs}
    known = {}
    for arch_name, path in records.items():
        try:
            known[arch_name] = compile_record.load(path)
        except compile_record.RecordError as error:
            raise UsageError(str(error)) from None
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    started = time.monotonic()
    with progress_bar() as progress:
        bars = {arch.name: progress.add_task(f"{arch.name}: starting", total=None) for arch in archs}
        report = compile_check.check(
            names,
            archs,
            args.size,
            dtypes,
            list(args.mode),
            args.imports,
            args.jobs,
            records={} if args.full else {name: path for name, path in records.items() if known[name]},
            spot_check=args.spot_check,
            seed=str(seed),
            on_progress=lambda arch, done, total, row: progress.update(
                bars[arch], completed=done, total=total, description=f"{arch}: {row}"
            ),
        )
    seconds = time.monotonic() - started
    print_compile_report(report, args.all)
    record = {
        "provenance": provenance.collect(torch.device("cpu")),
        "config": {
            "archs": [arch.name for arch in archs],
            "size": args.size,
            "names": args.names,
            "dtypes": dtypes,
            "modes": args.mode,
            "imports": args.imports,
            "full": args.full,
            "spot_check": args.spot_check,
            "seed": seed,
            "seconds": round(seconds, 1),
        },
        **report.to_dict(),
    }
    out = (
        args.out
        if args.out.suffix == ".json"
        else args.out
        / (f"compile-{'-'.join(arch.name for arch in archs)}-{args.size}-triton{record['provenance']['triton']}.json")
    )
    write_json_atomically(record, out)
    console.print(
        f"{len(report.builds)} builds of {len(report.groups)} kernel specializations for "
        f"{', '.join(arch.name for arch in archs)} in {seconds:.0f} s; wrote {out}"
    )
    new_units = print_record_summary(report, archs, known, records, args, seed)
    if args.update:
        whole_suite = not (args.names or args.dtype or args.mode or args.imports) and args.size == "small"
        for arch in archs:
            entries = report.units(arch.name) if whole_suite else {**known[arch.name], **report.units(arch.name)}
            compile_record.write(entries, records[arch.name])
            console.print(
                f"wrote {records[arch.name]}: {len(entries)} units"
                + ("" if whole_suite else " (this run's units added; none dropped: not a whole-suite run)")
            )
    for failure in report.failures:
        console.print(f"[red]FAIL[/] {escape(failure)}", highlight=False)
    if args.frozen and new_units and not args.update:
        console.print(
            f"[red]FAIL[/] {len(new_units)} compile unit(s) of this tree are missing from the record "
            f"({', '.join(str(path) for path in records.values())}): refresh it with `make compile-record` "
            f"(or `menagerie compile --update`) and commit it",
            highlight=False,
        )
        return 1
    if report.failures:
        console.print(f"[red]{len(report.failures)} failure(s)")
        return 1
    console.print("[green]every kernel compiled, within the limits, with a spill-free configuration")
    return 0


def cmd_diff(args) -> int:
    """``--diff``: the changed units, worst first, and whether any fails."""
    from menagerie.harness import compile_diff

    if args.max_occupancy_drop < 0:
        raise UsageError(f"--max-occupancy-drop: expected blocks >= 0, got {args.max_occupancy_drop}")
    try:
        base = args.diff or compile_diff.merge_base(args.record_dir)
        result = compile_diff.diff(base, args.record_dir, args.max_occupancy_drop, tuple(args.accept))
    except compile_diff.DiffError as error:
        raise UsageError(str(error)) from None
    table = Table(
        title=f"compile record: {args.record_dir} against {args.diff or 'the merge base with main'} "
        f"({base[:12]}), changed units, worst first",
        title_justify="left",
    )
    for column in ("unit", "regs", "stack B", "shared KiB", "MMA", "blocks/SM", "verdict"):
        table.add_column(column, justify="left" if column in ("unit", "MMA", "verdict") else "right", overflow="fold")
    for change in result.changes:
        base_entry, tree_entry = change.base, change.tree
        verdict = (
            ("[red]FAIL: " if change.fails else "[yellow]accepted: " if change.failures else "")
            + "; ".join(change.failures)
            if change.failures
            else tree_entry["verdict"]
        )
        table.add_row(
            escape(change.label),
            f"{base_entry['registers']} -> {tree_entry['registers']}",
            f"{base_entry['stack_bytes']} -> {tree_entry['stack_bytes']}",
            f"{base_entry['shared_bytes'] / 1024:.1f} -> {tree_entry['shared_bytes'] / 1024:.1f}",
            f"{base_entry['mma_class']} -> {tree_entry['mma_class']}",
            f"{change.base_blocks} -> {change.tree_blocks} ({change.warps} warps)",
            verdict,
        )
    if result.changes:
        console.print(table)
    console.print(
        f"{result.matched} units matched, {len(result.changes)} changed, {len(result.new)} new, "
        f"{len(result.gone)} gone",
        highlight=False,
    )
    for kind, labels in (("new", result.new), ("gone", result.gone)):
        for label in labels[:20]:
            console.print(f"  {kind}: {label}", highlight=False, markup=False)
        if len(labels) > 20:
            console.print(f"  ... and {len(labels) - 20} more {kind}", highlight=False)
    if result.failing:
        console.print(
            f"[red]FAIL[/] {len(result.failing)} unit(s) got worse: new spills, a weaker MMA class or "
            f"fewer resident blocks (accept one with --accept KERNEL)",
            highlight=False,
        )
        return 1
    console.print("[green]no unit spills anew, loses its MMA class or occupancy")
    return 0


def print_record_summary(report, archs, known, records, args, seed) -> list[dict]:
    """Units replayed and compiled per arch, the spot check's outcome; returns the units the record lacked."""
    new_units = [
        build
        for build in report.compiled()
        if build["fingerprint"] and build["fingerprint"] not in known.get(build["arch"], {})
    ]
    for arch in archs:
        units = report.units(arch.name)
        replayed = sum(1 for fingerprint in units if fingerprint in known[arch.name]) if not args.full else 0
        source = (
            "--full: record not used"
            if args.full
            else (f"record {records[arch.name]}" if known[arch.name] else f"no record at {records[arch.name]}")
        )
        console.print(
            f"{arch.name}: {len(units)} units, {replayed} replayed from the record, "
            f"{len(units) - replayed} compiled ({source})",
            highlight=False,
        )
    checks = report.spot_checks
    if checks:
        differing = sum(1 for check in checks if check["differences"])
        console.print(
            f"spot check: {len(checks)} recorded units compiled again (seed {seed}, "
            f"--spot-check {args.spot_check}): "
            + (f"[red]{differing} differ" if differing else "[green]all match their record entries")
        )
    if new_units:
        console.print(f"{len(new_units)} unit(s) not in the record:", highlight=False)
        for build in new_units[:40]:
            console.print(
                f"  new: {build['kernel']}@{build['arch']} [{specialization_label(build['specialization'])}] "
                f"{' '.join(f'{k}={v}' for k, v in build['config'].items())} "
                f"[{compile_record.verdict(build)}]",
                highlight=False,
                markup=False,
            )
        if len(new_units) > 40:
            console.print(f"  ... and {len(new_units) - 40} more", highlight=False)
    return new_units


def print_compile_report(report, show_all: bool) -> None:
    from menagerie.harness.compile_check import chosen_build

    table = Table(
        title="compiled kernels"
        + (
            ""
            if show_all
            else " (one line per kernel and specialization: the configuration an "
            "autotuner would pick here, and how many of its configurations "
            "are spill-free)"
        ),
        title_justify="left",
    )
    for column in (
        "arch",
        "kernel",
        "specialization",
        "config",
        "spill-free",
        "regs",
        "stack B",
        "shared KiB",
        "tensor cores",
        "occupancy",
        "status",
    ):
        table.add_column(
            column,
            justify="right" if column in ("regs", "stack B", "shared KiB", "occupancy", "spill-free") else "left",
            overflow="fold",
        )
    for members in report.groups.values():
        builds = [report.builds[i] for i in members]
        spill_free = sum(1 for b in builds if b["spills"] is False and not b["error"])
        shown = builds if show_all else [chosen_build(builds) or builds[0]]
        for build in shown:
            status = (
                ("[red]" + escape(build["error"]))
                if build["error"]
                else ("[yellow]spills" if build["spills"] else "[green]ok")
            )
            table.add_row(
                build["arch"],
                build["kernel"],
                specialization_label(build["specialization"]),
                " ".join(f"{k}={v}" for k, v in build["config"].items()),
                f"{spill_free}/{len(builds)}",
                format_number(build["registers"], "d"),
                format_number(build["stack_bytes"], "d"),
                format_number(build["shared_bytes"] / 1024, ".1f"),
                ", ".join(build["tensor_core_ops"]) or "-",
                "-" if build["occupancy"] is None else f"{100 * build['occupancy']:.0f}%",
                status,
            )
    console.print(table)
