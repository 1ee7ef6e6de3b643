"""The command line's layout: engine commands are modules of ``harness/cli``; family commands arrive through
entry points (which layer may import which is ``tests/test_layers.py``)."""

import argparse
import os
import subprocess
import sys
import types
from importlib.metadata import EntryPoint

from menagerie.harness import cli, entry_points

COMMANDS = {
    "list",
    "run",
    "merge",
    "submit",
    "collect",
    "compare",
    "env",
    "profile",
    "report",
    "compile",
    "history",
    "site",
    "data",
    "train",
    "mlperf",
    "activations",
    "study",
}


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


def test_each_module_lists_the_commands_its_parser_adds():
    assert command_names(cli.build_parser(["--help"])) == COMMANDS  # every command listed, none built
    for name in COMMANDS:
        parser = cli.build_parser([name])
        [commands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
        assert commands.choices[name]._actions[1:], f"{name}: its options were not built"


def modules_after(argv: list[str]) -> set[str]:
    """The modules a fresh interpreter holds once `menagerie ARGV` has run (the installed suite, no PYTHONPATH)."""
    program = (
        "import sys\nfrom menagerie.harness.cli import main\ntry:\n    main(sys.argv[1:])\n"
        "except SystemExit:\n    pass\nprint(' '.join(sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={name: value for name, value in os.environ.items() if name != "PYTHONPATH"},
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.splitlines()[-1].split())


def test_help_imports_neither_torch_nor_triton():
    imported = {name.split(".")[0] for name in modules_after(["--help"])}
    assert not imported & {"torch", "triton", "scipy", "numpy"}, imported


def test_list_imports_the_declarations_and_not_the_runner():
    imported = modules_after(["list"])
    assert {"menagerie.benchmarks.attention", "menagerie.harness.registry"} <= imported
    assert not imported & {"menagerie.harness.runner", "menagerie.harness.gate", "scipy"}


def test_a_family_command_module_without_commands_still_runs(monkeypatch, capsys):
    """Another package's command module from before ``COMMANDS``: its parser is built every time, and it runs."""
    module = types.ModuleType("older_family_commands")

    def add_parser(commands):
        older = commands.add_parser("older", help="a command from another package")
        older.add_argument("--times", type=int, default=1)
        older.set_defaults(func=lambda args: print("older ran", args.times) or 0)

    module.add_parser = add_parser
    monkeypatch.setitem(sys.modules, module.__name__, module)
    entry = EntryPoint(name="older", value=module.__name__, group=entry_points.COMMANDS)
    monkeypatch.setattr(entry_points, "entry_points", lambda group: [entry])
    assert "older" in command_names(cli.build_parser(["list"]))
    assert cli.main(["older", "--times", "2"]) == 0 and "older ran 2" in capsys.readouterr().out
