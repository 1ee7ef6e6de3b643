"""The command line's layout: engine commands are modules of ``harness/cli``; family commands arrive through
entry points (which layer may import which is ``tests/test_layers.py``)."""

import argparse
from importlib.metadata import EntryPoint

from menagerie.harness import cli, entry_points

COMMANDS = {"list", "run", "merge", "submit", "collect", "compare", "env", "profile", "report", "compile", "history", "site",
            "data", "train", "mlperf", "activations", "study"}


def command_names(parser: argparse.ArgumentParser) -> set[str]:
    [commands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return set(commands.choices)


def test_the_parser_lists_engine_and_family_commands():
    assert command_names(cli.build_parser()) == COMMANDS


def test_a_family_command_that_does_not_import_reports_why_and_spares_the_others(monkeypatch, capsys):
    broken = EntryPoint(name="broken", value="no_such_module_here.commands", group=entry_points.COMMANDS)
    monkeypatch.setattr(entry_points, "entry_points", lambda group: [broken])
    assert "broken" in command_names(cli.build_parser())
    assert cli.main(["broken", "--any", "arguments"]) == 2
    assert "menagerie broken: error: no_such_module_here.commands does not import" in capsys.readouterr().err


def test_an_uninstalled_source_tree_finds_the_family_commands_in_pyproject(monkeypatch):
    monkeypatch.setattr(entry_points, "entry_points", lambda group: [])
    assert command_names(cli.build_parser()) == COMMANDS
