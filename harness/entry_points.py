"""Entry points of the groups through which other packages extend the suite.

``menagerie.benchmarks``: benchmark families (a module that calls ``registry.register``).
``menagerie.commands``: ``menagerie`` subcommands (a module with ``add_parser(commands)`` and
``COMMANDS``, its commands' names and help, so that its parser is built only when one of them
runs; a module without ``COMMANDS`` has its parser built every time).
The engine finds the suite's own families and commands this way too, so it never names them.
A source tree run without being installed (as on the lent GPU machines) has no installed
entry points: they are then read from its ``pyproject.toml``.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

BENCHMARKS = "menagerie.benchmarks"
COMMANDS = "menagerie.commands"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def declared(group: str) -> list[EntryPoint]:
    """The installed entry points of ``group``, else those the source tree's pyproject.toml declares."""
    installed = list(entry_points(group=group))
    if installed or not PYPROJECT.is_file():
        return installed
    from menagerie.harness.toml_reader import tomllib

    table = tomllib.loads(PYPROJECT.read_text())["project"].get("entry-points", {}).get(group, {})
    return [EntryPoint(name, value, group) for name, value in table.items()]
