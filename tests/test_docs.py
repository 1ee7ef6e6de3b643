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
