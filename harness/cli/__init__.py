"""``menagerie``: list, run, compare, profile, report and describe the environment.

Exit codes: 0 success; 1 a regression, an accuracy failure or a crashed
implementation; 2 bad arguments or unreadable input.

One module per command, each with ``add_parser(commands)``: the engine's own below, and
the families' (``models.commands``: train, data, …) found through the entry points of
the group ``menagerie.commands``, so the engine never imports them. A source tree that
is run without being installed (``PYTHONPATH=. python -m harness.cli``, as on the lent
GPU machines) has no installed entry points: they are then read from its
``pyproject.toml``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from harness.cli.common import UsageError, errors

ENGINE_COMMANDS = ("listing", "run", "compare", "env", "profile", "report", "compile", "history")
FAMILY_COMMANDS = "menagerie.commands"
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def family_entry_points() -> list[EntryPoint]:
    """The installed entry points of the family commands, else those the source tree's pyproject.toml declares."""
    installed = list(entry_points(group=FAMILY_COMMANDS))
    if installed or not PYPROJECT.is_file():
        return installed
    try:
        import tomllib
    except ImportError:  # Python 3.10: only installed entry points
        return []
    declared = tomllib.loads(PYPROJECT.read_text())["project"].get("entry-points", {}).get(FAMILY_COMMANDS, {})
    return [EntryPoint(name, value, FAMILY_COMMANDS) for name, value in declared.items()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="menagerie", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in ENGINE_COMMANDS:
        importlib.import_module(f"harness.cli.{name}").add_parser(commands)
    for entry in family_entry_points():
        try:
            module = entry.load()
        except ImportError as error:
            add_unavailable(commands, entry, error)
        else:
            module.add_parser(commands)
    return parser


def add_unavailable(commands, entry, error: ImportError) -> None:
    """A family command whose module does not import here: it takes any arguments and reports why."""
    message = f"{entry.value} does not import: {error}"
    # A prefix character of its own, so that every argument, options included, lands unparsed in `arguments`.
    unavailable = commands.add_parser(entry.name, help=f"(unavailable: {error})", prefix_chars="+", add_help=False)
    unavailable.add_argument("arguments", nargs="*")

    def report(args) -> int:
        raise UsageError(message)

    unavailable.set_defaults(func=report)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # what `run --repeat` gives each replicate process
    try:
        return args.func(args)
    except UsageError as error:
        errors.print(f"menagerie {args.command}: error: {error}", markup=False, highlight=False)
        return 2
