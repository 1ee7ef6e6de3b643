"""The picture of the results site in docs/history-and-site.md: builds it from the committed CPU history and
screenshots its index in headless chromium (playwright driving Debian's /usr/bin/chromium). ``make site-screenshot``.

    python scripts/site_screenshot.py [--history results/history/cpu-tiny] [--out results/history/site-index.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from menagerie.harness import site


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=Path, default=Path("results/history/cpu-tiny"))
    parser.add_argument("--out", type=Path, default=Path("results/history/site-index.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        built = site.build([args.history], Path(scratch) / "site", cache_dir=Path(scratch) / "index")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 700})
            page.goto((built.out / "index.html").as_uri())
            page.wait_for_load_state("load")
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
