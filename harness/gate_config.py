"""Per-benchmark settings of the regression gate: ``[tool.menagerie.gate]`` in a pyproject.toml, or ``--gate-config``.

Layout, in the user's pyproject.toml::

    [tool.menagerie.gate]
    threshold = 0.03          # optional defaults for every row; the command's flags, when given, override them
    spread_factor = 0.5
    max_undetectable = 0.10
    [tool.menagerie.gate.benchmarks."attention.*"]   # an fnmatch glob on the benchmark name (case-sensitive)
    threshold = 0.05
    max_undetectable = 0.20
    [tool.menagerie.gate.benchmarks."attention.sliding_window"]
    spread_factor = 1.0

A ``--gate-config PATH`` file is either such a pyproject.toml (named so, or with a top-level ``tool`` table), or a
TOML file whose top level is the gate table itself (``threshold = ...`` and ``[benchmarks."glob"]``). Without
``--gate-config``, ``pyproject.toml`` in the current directory is read when it exists and has the table; otherwise
nothing changes.

Precedence, setting by setting. The defaults of a comparison are the command's flag when given, else the table's
top-level value, else the built-in default (``gate.DEFAULT_*``); the uniform shift of whole runs uses them. A row of
benchmark B takes each setting from the last table under ``benchmarks``, in file order, whose glob matches B and
sets it (later tables override earlier ones, setting by setting, as in .gitattributes), else from the defaults.

Settings: ``threshold`` >= 0, ``spread_factor`` >= 0, ``max_undetectable`` > 0, each a finite number (a boolean is
not). Anything else (TOML syntax, an unknown key, a bad value, a ``benchmarks`` entry that is not a table) is a
``GateConfigError``: one line naming the file and what is wrong.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from menagerie.harness.toml_reader import tomllib

SETTINGS = ("threshold", "spread_factor", "max_undetectable")
PYPROJECT = Path("pyproject.toml")
TABLE = "tool.menagerie.gate"


class GateConfigError(ValueError):
    """A gate configuration that cannot be used: one line naming the file and what is wrong."""


@dataclass(frozen=True)
class RowSettings:
    """The settings the gate applies to one row (or to the uniform shift)."""

    threshold: float
    spread_factor: float
    max_undetectable: float


@dataclass(frozen=True)
class Rule:
    """A table under ``benchmarks``: the settings it gives the rows whose benchmark name matches ``glob``."""

    glob: str
    settings: Mapping[str, float]  # some of SETTINGS

    def __post_init__(self):
        problem = _problem(self.settings, SETTINGS)
        if problem:
            raise GateConfigError(f'benchmarks."{self.glob}": {problem}')


@dataclass(frozen=True)
class GateConfig:
    """A gate table as read: its file (None when there is none), its top-level settings and its rules in file
    order."""

    path: Path | None = None
    defaults: Mapping[str, float] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()


def resolve(rules: Iterable[Rule], benchmark: str, defaults: RowSettings) -> RowSettings:
    """The settings of a row of ``benchmark``: each from the last rule that matches and sets it, else the default."""
    values = {}
    for rule in rules:
        if fnmatchcase(benchmark, rule.glob):
            values.update(rule.settings)
    return dataclasses.replace(defaults, **values)


def unmatched(rules: Iterable[Rule], benchmarks: Iterable[str]) -> list[str]:
    """The globs of ``rules`` that match none of ``benchmarks`` (a typo, most likely)."""
    benchmarks = list(benchmarks)
    return [rule.glob for rule in rules if not any(fnmatchcase(name, rule.glob) for name in benchmarks)]


def load(path: Path | None = None) -> GateConfig:
    """The gate table of ``path`` (a pyproject.toml or a plain gate table); without ``path``, that of
    ./pyproject.toml when it has one, else an empty configuration."""
    if path is None:
        if not PYPROJECT.is_file():
            return GateConfig()
        table = _lookup(_read(PYPROJECT), TABLE)
        return GateConfig() if table is None else parse(table, PYPROJECT, TABLE)
    data = _read(path)
    if path.name == PYPROJECT.name or "tool" in data:
        table = _lookup(data, TABLE)
        if table is None:
            raise GateConfigError(f"{path}: no [{TABLE}] table")
        return parse(table, path, TABLE)
    return parse(data, path, None)


def parse(table, path: Path, prefix: str | None) -> GateConfig:
    """A gate table read from ``path``, at ``prefix`` there (None: the file's top level)."""
    where = f"[{prefix}]" if prefix else "the top level"
    if not isinstance(table, dict):
        raise GateConfigError(f"{path}: {where} must be a table, got {table!r}")
    problem = _problem(table, (*SETTINGS, "benchmarks"))
    if problem:
        raise GateConfigError(f"{path}: {where}: {problem}")
    benchmarks_name = f"{prefix}.benchmarks" if prefix else "benchmarks"
    benchmarks = table.get("benchmarks", {})
    if not isinstance(benchmarks, dict):
        raise GateConfigError(f"{path}: {benchmarks_name} must be a table of benchmark globs, got {benchmarks!r}")
    rules = []
    for glob, settings in benchmarks.items():
        name = f'[{benchmarks_name}."{glob}"]'
        if not isinstance(settings, dict):
            raise GateConfigError(f"{path}: {name} must be a table of settings, got {settings!r}")
        problem = _problem(settings, SETTINGS)
        if problem:
            raise GateConfigError(f"{path}: {name}: {problem}")
        rules.append(Rule(glob, dict(settings)))
    return GateConfig(path, {name: table[name] for name in SETTINGS if name in table}, tuple(rules))


def _read(path: Path) -> dict:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise GateConfigError(f"{path}: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise GateConfigError(f"{path}: not valid TOML: {error}") from None


def _lookup(data: dict, dotted: str):
    """The value at a dotted path of tables, or None where a part is missing or not a table."""
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _problem(table: Mapping, allowed: tuple[str, ...]) -> str | None:
    """What is wrong with a table of settings (its first problem), or None."""
    unknown = [key for key in table if key not in allowed]
    if unknown:
        return f"unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})"
    for name in SETTINGS:
        if name not in table:
            continue
        value = table[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{name} must be a number, got {value!r}"
        if name == "max_undetectable" and not value > 0:
            return f"max_undetectable must be > 0, got {value!r}"
        if value < 0:
            return f"{name} must be >= 0, got {value!r}"
    return None
