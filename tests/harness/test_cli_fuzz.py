"""Every subcommand under random argument lists: exit 0, 1 or 2, one line on stderr for a usage
error (after any one-line warnings), and never a traceback (a property test with hypothesis).

Arguments are drawn from the subcommand's own options and choices, benchmark names and near
misses, numbers, odd text and paths (missing, an empty file, a file of junk, two run records, a
folder). Where a command would start real work (measuring, compiling, training, loading a
model), that step is replaced by one that raises ``ReachedWork``: the arguments got past every
check, which passes too.
"""

import argparse
import contextlib
import io
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from menagerie.harness.cli import build_parser, main
from tests.harness.test_cli import ONE_SAMPLE


class ReachedWork(Exception):
    """Raised in place of a command's real work."""


# The first call of each command's real work (a module attribute looked up at call time).
WORK = [
    "menagerie.harness.runner.run",
    "menagerie.harness.cli.run.run_replicates",
    "menagerie.harness.replicates.WorkFolder.create",
    "menagerie.harness.profile.profile",
    "menagerie.harness.compile_check.check",
    "menagerie.harness.ceilings.get_ceilings",
    "menagerie.harness.cluster.Submission.launch",
    "menagerie.harness.cluster.submit_training",
    "menagerie.models.train_resnet.train",
    "menagerie.models.sae.train_sae",
    "menagerie.models.data.folders.write_synthetic",
    "menagerie.models.data.folders.write_digits",
    "menagerie.models.data.convert.to_ffcv",
    "menagerie.models.commands.data.data_imagenet",
    "menagerie.models.commands.data.data_stages",
    "menagerie.models.commands.data.data_throughput",
    "menagerie.models.activation_sources.load_model",
    "menagerie.models.minilm_sinks.run_study",
    "menagerie.harness.site.build",
]


def _resolve(dotted: str):
    """(owner, attribute) of a dotted path: a module attribute or a class attribute."""
    import importlib

    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1]
    raise ImportError(dotted)


def _reached(*args, **kwargs):
    raise ReachedWork


PATHS = ["missing.json", "empty.json", "junk.json", "base.json", "new.json", "folder", "folder/missing", "-"]
NAMES = [
    "elementwise",
    "attention.sliding_window",
    "attention.slidingwindow",
    "ssm.ssd",
    "sae",
    "nope",
    "resnet.resnet50",
    "triton",
    "torch",
    "fp16",
    "fp32",
    "bf16",
    "fp64",
    "fwd",
    "bwd",
    "tiny",
    "huge",
]
VALUES = st.one_of(
    st.integers(-5, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(PATHS + NAMES + ["", " ", "=", ",", "a,b", "sm_80", "sm_12", "1/0", "0/2", "--", "ü"]),
    st.text(alphabet="abc-_=,./:0123456789 ü", max_size=12),
)


def _option(action: argparse.Action):
    """An option as the user might give it: the flag alone, or with a value (one of its choices
    or anything at all)."""
    flag = st.sampled_from(action.option_strings)
    if action.nargs == 0:
        return flag.map(lambda name: [name])
    value = st.one_of(st.sampled_from([str(choice) for choice in action.choices]), VALUES) if action.choices else VALUES
    return st.tuples(flag, st.lists(value, min_size=0, max_size=2)).map(lambda pair: [pair[0], *pair[1]])


def arguments_of(parser: argparse.ArgumentParser):
    """Random argument lists for a parser: mostly its own options with values and positional names
    or paths, sometimes any word in any order; into a sub-command first where it has them."""
    subcommands = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if subcommands:
        choices = subcommands[0].choices
        return st.one_of(
            st.sampled_from(sorted(choices)).flatmap(
                lambda name: arguments_of(choices[name]).map(lambda rest: [name, *rest])
            ),
            st.lists(VALUES, max_size=3),
        )
    options = [
        action for action in parser._actions if action.option_strings and not isinstance(action, argparse._HelpAction)
    ]
    positional = st.one_of(st.sampled_from(PATHS + NAMES), VALUES)
    items = [st.lists(positional, min_size=1, max_size=2)] + [_option(action) for action in options]
    return st.lists(st.one_of(items), max_size=5).map(lambda parts: [word for part in parts for word in part])


PARSER = build_parser()
COMMANDS = next(action for action in PARSER._actions if isinstance(action, argparse._SubParsersAction)).choices


@pytest.fixture(scope="module")
def workplace(tmp_path_factory):
    """A folder with the paths the arguments name (``PATHS``), and every command's real work replaced."""
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "empty.json").touch()
    (folder / "junk.json").write_bytes(b"\x00{not json\xff")
    (folder / "folder").mkdir()
    # Two real run records, for compare, report and history.
    assert main(["run", "elementwise", "--impl", "torch", *ONE_SAMPLE, "--out", str(folder / "base.json")]) == 0
    shutil.copy(folder / "base.json", folder / "new.json")
    patches = pytest.MonkeyPatch()
    for dotted in WORK:
        patches.setattr(*_resolve(dotted), _reached)
    patches.chdir(folder)
    patches.setenv("MENAGERIE_CACHE_DIR", str(folder / "cache"))
    yield folder
    patches.undo()


def run_cli(argv: list[str]) -> tuple[int | str, str]:
    """(exit code or "work", stderr) of ``menagerie argv`` in this process."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 2)
        except ReachedWork:
            code = "work"
    return code, stderr.getvalue()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_random_arguments_never_raise_a_traceback(command, workplace):
    @settings(
        max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(arguments_of(COMMANDS[command]).map(lambda rest: [command, *rest]))
    def check(argv):
        code, stderr = run_cli(argv)  # an exception other than ReachedWork fails the test with its traceback
        assert code in (0, 1, 2, "work"), f"menagerie {' '.join(argv)!r}: exit {code}\n{stderr}"
        assert "Traceback" not in stderr, f"menagerie {argv}: a traceback on stderr\n{stderr}"
        if code == 2:  # one line for the error, after any warnings (one line each)
            lines = [line for line in stderr.strip().splitlines() if not line.startswith("warning: ")]
            assert len(lines) == 1, f"menagerie {argv}: a usage error in {len(lines)} lines:\n{stderr}"

    check()


def test_the_work_stand_ins_name_real_functions():
    """A renamed function would leave its command's real work in place: every path must resolve."""
    for dotted in WORK:
        owner, name = _resolve(dotted)
        assert callable(getattr(owner, name)), dotted


def test_a_usage_error_is_one_line_and_exit_2(workplace):
    assert run_cli(["run", "--size", "huge"])[0] == 2
    code, stderr = run_cli(["compare", "missing.json", "junk.json"])
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and Path(os.getcwd()) == workplace
