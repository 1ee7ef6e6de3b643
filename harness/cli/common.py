"""What the commands share: usage errors, the consoles, argument types, benchmark and row selection, records."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from menagerie.harness import registry
from menagerie.harness.results import ResultError, load_run, write_json_atomically

# Tables need room: a pipe or a CI log gets 160 columns instead of the 80 rich assumes there.
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True)


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit code 2."""


class Interrupted(Exception):
    """Ctrl-C (SIGINT) during work whose finished part was kept: reported in one line with how to go on, exit 130."""


def positive(kind):
    """An argparse type: a positive ``kind`` (int or float)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def add_config_options(parser, config, options: dict[str, dict]) -> None:
    """``--<field>`` for each field of the dataclass ``config`` named in ``options`` (which maps it to add_argument's
    other keywords: type, choices, help), defaulting to the field's own default, so that a default is written once.
    A field without a default is required; a boolean that defaults to True is ``--no-<field>``, one that defaults to
    False ``--<field>``."""
    defaults = {field.name: field.default for field in dataclasses.fields(config)}
    for name, keywords in options.items():
        flag, default = name.replace("_", "-"), defaults[name]
        if isinstance(default, bool):
            parser.add_argument(
                f"--no-{flag}" if default else f"--{flag}",
                dest=name,
                action="store_false" if default else "store_true",
                **keywords,
            )
        elif default is dataclasses.MISSING:
            parser.add_argument(f"--{flag}", required=True, **keywords)
        else:
            parser.add_argument(f"--{flag}", default=default, **keywords)


def config_from(args, config, **overrides):
    """The dataclass ``config`` from the parsed options named after its fields, with ``overrides``."""
    values = {
        field.name: getattr(args, field.name) for field in dataclasses.fields(config) if hasattr(args, field.name)
    }
    return config(**values | overrides)


def fraction(text: str) -> float:
    """An argparse type: a non-negative number such as 0.05 (5%)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.05, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative fraction such as 0.05 (5%), got {text!r}")
    return value


def requested_device(text: str | None):
    """The ``--device`` option's device (a torch.device): cuda when available unless given."""
    from menagerie.harness.device import default_device, parse_device

    try:
        return parse_device(text) if text else default_device()
    except ValueError as error:
        raise UsageError(str(error)) from None


def select(names: list[str]) -> list[registry.Benchmark]:
    """The registered benchmarks that the names, families or glob patterns choose."""
    try:
        return registry.select(names)
    except ValueError as error:
        raise UsageError(str(error)) from None
    except ImportError as error:
        if error.name != "menagerie.kernels":  # a broken family module is a bug: its traceback
            raise
        raise UsageError(str(error)) from None  # triton imported before the kernels: the environment


def add_row_selection(parser: argparse.ArgumentParser) -> None:
    """Which rows of the chosen benchmarks: cases, implementations, preset, dtypes, modes, device."""
    parser.add_argument("--case", action="append", default=[], help="glob on case names (repeatable)")
    parser.add_argument("--impl", action="append", default=[], help="glob on implementation names (repeatable)")
    parser.add_argument("--size", choices=registry.SIZES, help="size preset (default: small on a GPU, tiny on the CPU)")
    parser.add_argument(
        "--dtype",
        action="append",
        choices=sorted(registry.DTYPES),
        default=[],
        help="dtype (repeatable; default: bf16 on a GPU, fp32 on the CPU)",
    )
    parser.add_argument(
        "--mode",
        action="append",
        choices=registry.MODES,
        default=[],
        help="mode (repeatable; default: every mode the benchmark declares)",
    )
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def selected_rows(args, device, **settings):
    """The run configuration (a runner.RunConfig) of the rows chosen by ``add_row_selection``'s options."""
    from menagerie.harness import runner

    return runner.RunConfig(
        size=args.size or registry.default_size(device),
        device=device,
        dtypes=tuple(dict.fromkeys(registry.torch_dtype(name) for name in args.dtype)),
        modes=tuple(dict.fromkeys(args.mode)),
        cases=tuple(args.case),
        impls=tuple(args.impl),
        **settings,
    )


def load(path: Path) -> dict:
    """A run record or baseline, checked against the schema."""
    try:
        return load_run(path)
    except ResultError as error:
        raise UsageError(str(error)) from None


def write_record(record: dict, folder: Path, stem: str) -> Path:
    """Write ``record`` as ``folder/<stem>-<UTC timestamp>.json``."""
    path = folder / f"{stem}-{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}.json"
    return write_json_atomically(record, path)


def progress_bar() -> Progress:
    """A transient progress display on stderr: description, bar, done of total, elapsed time."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
    )
