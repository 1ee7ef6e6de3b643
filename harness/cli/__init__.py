"""``menagerie``: list, run, merge shards, compare, profile, report and describe the environment.

Exit codes: 0 success; 1 a regression, an accuracy failure or a crashed
implementation; 2 bad arguments or unreadable input.

One module per command, each with ``COMMANDS`` (its commands' names and help) and
``add_parser(commands)``: the engine's own below, and the families' (``menagerie.models.commands``:
train, data, …) found through the entry points of the group ``menagerie.commands``
(``harness/entry_points.py``), so the engine never imports them. A command module imports torch,
scipy and the rest of its work where it uses them, not at its top: every module is imported to list
the commands, and only the chosen command's parser is built.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from menagerie.harness import entry_points
from menagerie.harness.cli.common import Interrupted, UsageError, errors

# Modules named after their commands; `list_`: a submodule named `list` would shadow the builtin in this package.
ENGINE_COMMANDS = (
    "list_",
    "run",
    "merge",
    "cluster",
    "compare",
    "env",
    "profile",
    "report",
    "compile",
    "history",
    "site",
)


class Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line on stderr (``menagerie run: error: ...``), exit 2; subcommands'
    parsers are of this class too."""

    def error(self, message: str):
        errors.print(
            f"{self.prog}: error: {message} (see `{self.prog} --help`)", markup=False, highlight=False, soft_wrap=True
        )
        raise SystemExit(2)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command. Given ``argv``, only the chosen command's options are built (its module's
    ``add_parser``); the others are listed by name and help, so that ``menagerie --help`` imports neither torch
    nor what the other commands need. Without ``argv``, every command's options are built."""
    chosen = None if argv is None else next((arg for arg in argv if not arg.startswith("-")), "")
    parser = Parser(prog="menagerie", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in ENGINE_COMMANDS:
        add_commands(commands, importlib.import_module(f"menagerie.harness.cli.{name}"), chosen)
    for entry in entry_points.declared(entry_points.COMMANDS):
        try:
            module = entry.load()
        except ImportError as error:
            add_unavailable(commands, entry, error)
        else:
            add_commands(commands, module, chosen)
    return parser


def add_commands(commands, module, chosen: str | None) -> None:
    """A command module's commands: its whole parser when one of them is ``chosen`` (or every parser is wanted,
    ``None``), else each by name and help. Another package's module without ``COMMANDS`` is built every time."""
    if chosen is None or not hasattr(module, "COMMANDS") or chosen in module.COMMANDS:
        module.add_parser(commands)
        return
    for name, help in module.COMMANDS.items():
        commands.add_parser(name, help=help)


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
    args = build_parser(argv).parse_args(argv)
    args.argv = argv  # what `run --repeat` gives each replicate process
    try:
        return args.func(args)
    except UsageError as error:
        errors.print(f"menagerie {args.command}: error: {error}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except Interrupted as interrupted:
        errors.print(
            f"menagerie {args.command}: interrupted: {interrupted}", markup=False, highlight=False, soft_wrap=True
        )
        return 130
    except KeyboardInterrupt:
        errors.print(f"menagerie {args.command}: interrupted; nothing was written", markup=False, highlight=False)
        return 130
    except OSError as error:  # a full disk, a folder that cannot be written: what failed, in one line
        errors.print(
            f"menagerie {args.command}: error: {error.strerror or error}"
            + (f": {error.filename}" if error.filename else ""),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return 1
