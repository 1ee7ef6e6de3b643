"""The documentation: built by Sphinx with warnings as errors (a broken link or reference fails), its
command-line reference complete against the parsers, its pages loading offline in headless chromium."""

import subprocess
import sys
from pathlib import Path

import pytest

from menagerie.harness.cli import build_parser
from tests.browser import launched_chromium, needs_chromium, open_page

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))
import cli_reference  # noqa: E402  (docs/ is not a package)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site-docs")
    sphinx = Path(sys.executable).with_name("sphinx-build")
    done = subprocess.run([str(sphinx), "-W", "--keep-going", "-q", "-b", "html", str(ROOT / "docs"), str(out)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as launched:
        yield launched


def test_every_command_and_flag_is_on_the_cli_page(built):
    page = (built / "cli.html").read_text()
    missing = []
    for name, _, parser in cli_reference.commands(build_parser()):
        if f'<span class="pre">{name.split()[-1]}</span>' not in page and name not in page:
            missing.append(name)
        for action in parser._actions:
            missing += [flag for flag in action.option_strings if flag not in ("-h", "--help") and flag not in page]
    assert not missing, missing
    assert len(cli_reference.commands(build_parser())) >= 15


def test_the_check_sees_a_missing_flag(built):
    parser = build_parser()
    run = dict((name, sub) for name, _, sub in cli_reference.commands(parser))["menagerie run"]
    run.add_argument("--a-flag-no-page-has")
    assert "--a-flag-no-page-has" not in (built / "cli.html").read_text()
    assert "--a-flag-no-page-has" in cli_reference.reference(parser)


def test_a_broken_link_fails_the_build(tmp_path):
    source = tmp_path / "docs"
    source.mkdir()
    (source / "conf.py").write_text('extensions = ["myst_parser"]\nsource_suffix = {".md": "markdown"}\n')
    (source / "index.md").write_text("# Home\n\nSee [the gate](gating.md).\n")
    sphinx = Path(sys.executable).with_name("sphinx-build")
    done = subprocess.run([str(sphinx), "-W", "-q", "-b", "html", str(source), str(tmp_path / "out")],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode != 0 and "gating.md" in done.stderr


@needs_chromium
@pytest.mark.parametrize("name", ["index.html", "cli.html", "api.html"])
def test_pages_load_offline_without_errors(built, browser, name):
    page, problems = open_page(browser, built / name)
    assert page.title()
    assert problems == {"console": [], "exceptions": [], "network": []}


@needs_chromium
def test_search_works_from_files(built, browser):
    page, problems = open_page(browser, built / "search.html")
    page.goto((built / "search.html").as_uri() + "?q=threshold")
    page.wait_for_selector("#search-results li", timeout=15000)
    assert page.locator("#search-results li").count() >= 1
    assert problems["console"] == [] and problems["exceptions"] == []


# The pages whose shell commands a user copies first; each command in their ```bash blocks is run here.
COMMAND_PAGES = ("getting-started.md", "gating.md")
GPU_ONLY = "# GPU only"  # a command marked so at its end is not run on the CPU
# Added to every `menagerie run` so that it takes seconds: one small benchmark, short budgets, the tiny preset.
QUICK_RUN = ("elementwise.bias_gelu", "--impl", "torch", "--mode", "fwd", "--budget", "0.05", "--warmup", "0.01",
             "--seeds", "1", "--size", "tiny")  # fmt: skip


def shell_commands(page: Path) -> list[str]:
    """The commands of a page's ```bash blocks, comments cut, one per line."""
    commands, inside = [], False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```bash"
            continue
        if inside and line.strip() and not line.lstrip().startswith("#"):
            commands.append(line)
    return commands


def test_the_pages_show_commands():
    for name in COMMAND_PAGES:
        assert shell_commands(ROOT / "docs" / name), name


def test_every_make_target_shown_exists():
    """`make` lines are dry-run (`make -n`): their real runs are CI's own phases (lint, test, compile-check)."""
    for name in COMMAND_PAGES:
        for command in shell_commands(ROOT / "docs" / name):
            if command.startswith("make "):
                target = command.split("#")[0].split()[1]
                done = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
                assert done.returncode == 0, f"{name}: {command}\n{done.stderr}"


def test_the_menagerie_commands_run_at_the_tiny_preset(tmp_path):
    """The gating page's commands, in order, in a scratch folder holding a tiny baseline and history for `cpu`."""
    import shlex
    import shutil

    menagerie = Path(sys.executable).with_name("menagerie")

    def run(arguments: list[str]) -> subprocess.CompletedProcess:
        if arguments[0] == "run":
            arguments = arguments + list(QUICK_RUN)
        return subprocess.run([str(menagerie), *arguments], cwd=tmp_path, capture_output=True, text=True)

    baseline = tmp_path / "results" / "baselines" / "cpu.json"
    made = run(["run", "--repeat", "2", "--out", str(baseline)])
    assert made.returncode == 0, made.stderr
    (tmp_path / "results" / "history" / "cpu").mkdir(parents=True)
    shutil.copy(baseline, tmp_path / "results" / "history" / "cpu" / "base.json")
    ran = 0
    for name in COMMAND_PAGES:
        for command in shell_commands(ROOT / "docs" / name):
            if not command.startswith("menagerie ") or command.rstrip().endswith(GPU_ONLY):
                continue
            arguments = shlex.split(command.split("#")[0].replace("<device>", "cpu"))[1:]
            done = run(arguments)
            # 0 or 1: a gate on a busy CPU may fail (rows underpowered); never a usage error or a traceback
            assert done.returncode in (0, 1) and "Traceback" not in done.stderr, f"{command}\n{done.stderr}"
            ran += 1
    assert ran >= 3
