"""Renders a menagerie report page in headless Chromium and checks what a reader sees.

    python scripts/render_report_html.py results/reports/<run>/report.html [--screenshot page.png]

The page is loaded from a ``file://`` URL, offline. A copy of it gets a probe
script that, after the load event, counts the images that decoded (natural width
above 0) and the rows of the rows table, and writes the counts into the DOM, which
Chromium's ``--dump-dom`` prints. ``--screenshot`` also saves a picture of the
original page. Prints the counts as JSON; exits 1 when an image did not decode or
the rows table rendered no row, 2 when Chromium is not installed.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const probe = document.createElement("pre");
  probe.id = "render-probe";
  probe.textContent = JSON.stringify({
    images: images.length,
    decoded: images.filter((image) => image.complete && image.naturalWidth > 0).length,
    rows: document.querySelectorAll("#rows tbody tr").length,
    title: document.title,
  });
  document.body.appendChild(probe);
});
</script>"""


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def _chromium(chromium: str, profile_dir: str, *args: str) -> subprocess.CompletedProcess:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={profile_dir}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def render(page: Path, screenshot: Path | None = None, chromium: str | None = None) -> dict:
    """Counts of images, decoded images and table rows that Chromium rendered from ``page``."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError(f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)})")
    page = Path(page).resolve()
    with tempfile.TemporaryDirectory(prefix="menagerie-render-") as scratch:
        probed = Path(scratch) / "probed.html"
        probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
        dom = _chromium(
            chromium, str(Path(scratch) / "profile"), "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()
        ).stdout
        if screenshot is not None:
            _chromium(
                chromium,
                str(Path(scratch) / "profile"),
                "--hide-scrollbars",
                "--window-size=1400,2400",
                f"--screenshot={Path(screenshot).resolve()}",
                page.as_uri(),
            )
    found = re.search(r'<pre id="render-probe">(.*?)</pre>', dom, re.S)
    if not found:
        raise RuntimeError("the probe did not run: Chromium did not finish loading the page")
    return json.loads(html.unescape(found.group(1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="a report.html written by `menagerie report`")
    parser.add_argument("--screenshot", type=Path, help="also save a PNG screenshot of the page here")
    args = parser.parse_args(argv)
    if not args.page.is_file():
        print(f"render_report_html: error: no such page {args.page}", file=sys.stderr)
        return 2
    try:
        counts = render(args.page, args.screenshot)
    except FileNotFoundError as error:
        print(f"render_report_html: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(counts))
    return 0 if counts["rows"] > 0 and counts["images"] == counts["decoded"] else 1


if __name__ == "__main__":
    sys.exit(main())
