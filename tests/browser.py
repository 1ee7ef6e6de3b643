"""Headless chromium for the tests of web pages: playwright driving Debian's /usr/bin/chromium (``make browser``),
loading ``file://`` pages with every other request refused, so that a page that reaches for the network fails."""

import contextlib
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make browser)")


@contextlib.contextmanager
def launched_chromium():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


def open_page(browser, path: Path):
    """The page at ``path`` with its console errors, uncaught exceptions and refused (non-file) requests."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    problems = {"console": [], "exceptions": [], "network": []}
    page.on("console", lambda message: problems["console"].append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems["exceptions"].append(str(error)))

    def only_files(route):
        if route.request.url.startswith("file://"):
            return route.continue_()
        problems["network"].append(route.request.url)
        return route.abort()

    page.route("**/*", only_files)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, problems
