"""The command line's layout: the engine never imports ``models``; family commands arrive through entry points."""

import argparse
import ast
from importlib.metadata import EntryPoint
from pathlib import Path

import harness
from harness import cli

HARNESS = Path(harness.__file__).parent
COMMANDS = {"list", "run", "compare", "env", "profile", "report", "compile", "history",
            "data", "train", "mlperf", "activations", "study"}


def models_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name == "models" or name.startswith("models.") for name in names):
            found.append(f"{path.relative_to(HARNESS.parent)}:{node.lineno}")
    return found


def command_names(parser: argparse.ArgumentParser) -> set[str]:
    [commands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return set(commands.choices)


def test_the_engine_never_imports_models():
    found = [place for path in sorted(HARNESS.rglob("*.py")) for place in models_imports(path)]
    assert not found, "harness/ imports models at " + ", ".join(found)


def test_the_parser_lists_engine_and_family_commands():
    assert command_names(cli.build_parser()) == COMMANDS


def test_a_family_command_that_does_not_import_reports_why_and_spares_the_others(monkeypatch, capsys):
    broken = EntryPoint(name="broken", value="no_such_module_here.commands", group=cli.FAMILY_COMMANDS)
    monkeypatch.setattr(cli, "entry_points", lambda group: [broken])
    assert "broken" in command_names(cli.build_parser())
    assert cli.main(["broken", "--any", "arguments"]) == 2
    assert "menagerie broken: error: no_such_module_here.commands does not import" in capsys.readouterr().err


def test_an_uninstalled_source_tree_finds_the_family_commands_in_pyproject(monkeypatch):
    monkeypatch.setattr(cli, "entry_points", lambda group: [])
    assert command_names(cli.build_parser()) == COMMANDS
