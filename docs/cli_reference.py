"""The command-line reference, written from ``menagerie``'s argument parsers when the docs are built.

``commands(parser)`` walks every command and subcommand; ``reference(parser)`` renders them as
Markdown: per command its help, its usage and each option with its help and default. conf.py
writes it to ``_generated/cli_commands.md``, which ``cli.md`` includes, so a flag added to a parser
is in the next build and a removed one is gone.
"""

from __future__ import annotations

import argparse
import re

SPECIAL = re.compile(r"([*_<>\[\]|\\])")


def _text(help_text: str | None) -> str:
    """argparse help as Markdown: code spans kept, the other characters Markdown would read escaped."""
    if not help_text:
        return ""
    pieces = re.split(r"(`[^`]*`)", help_text.replace("%%", "%"))
    return "".join(piece if piece.startswith("`") else SPECIAL.sub(r"\\\1", piece) for piece in pieces)


def commands(
    parser: argparse.ArgumentParser, prefix: str = "menagerie"
) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, help, parser)`` of every command below ``parser``, depth first, in the parsers' order."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, subparser in action.choices.items():
                found.append((f"{prefix} {name}", helps.get(name) or "", subparser))
                found += commands(subparser, f"{prefix} {name}")
    return found


def _option(action: argparse.Action) -> str:
    names = ", ".join(f"`{name}`" for name in action.option_strings) or f"`{action.metavar or action.dest}`"
    default = action.default
    shown = (
        f" (default: `{default}`)"
        if action.option_strings and default not in (None, False, [], argparse.SUPPRESS)
        else ""
    )
    return f"- {names}: {_text(action.help)}{shown}"


def reference(parser: argparse.ArgumentParser) -> str:
    lines = []
    for name, help_text, subparser in commands(parser):
        lines += [f"## `{name}`", "", _text(help_text), "", "```text", subparser.format_usage().strip(), "```", ""]
        options = [
            action
            for action in subparser._actions
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
            and action.help != argparse.SUPPRESS
        ]
        lines += [_option(action) for action in options] + [""]
    return "\n".join(lines)
