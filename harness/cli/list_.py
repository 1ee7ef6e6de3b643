"""``menagerie list``: the registered benchmarks, their modes, dtypes, implementations and cases."""

from __future__ import annotations

from rich.table import Table

from menagerie.harness import registry
from menagerie.harness.cli.common import console, select

# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "list": "list registered benchmarks, their cases and implementations",
}


def add_parser(commands) -> None:
    listing = commands.add_parser("list", help=COMMANDS["list"])
    listing.add_argument("names", nargs="*", help="benchmark names, families or glob patterns")
    listing.add_argument("--size", choices=registry.SIZES, default=None, help="show only this preset's cases")
    listing.set_defaults(func=cmd_list)


def cmd_list(args) -> int:
    table = Table(title="menagerie benchmarks")
    for column in ("benchmark", "modes", "dtypes", "implementations", "cases"):
        table.add_column(column)
    for bench in select(args.names):
        sizes = [args.size] if args.size else list(registry.SIZES)
        cases = "\n".join(
            f"{size}: {', '.join(case.name for case in bench.cases.get(size, ())) or '-'}" for size in sizes
        )
        impls = "\n".join(f"{impl.name} ({impl.role})" for impl in bench.impls)
        dtypes = ", ".join(registry.dtype_name(dtype) for dtype in bench.dtypes)
        table.add_row(bench.name, ", ".join(bench.modes), dtypes, impls, cases)
    console.print(table)
    return 0
