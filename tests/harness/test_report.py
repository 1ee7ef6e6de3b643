"""``menagerie report``: plots, a self-contained HTML page and a Markdown table from a run record."""

import copy
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image

from menagerie.harness import registry, report, runner
from menagerie.harness.cli import main
from menagerie.harness.formatting import GATE_COLUMNS
from menagerie.harness.gate import gate
from menagerie.harness.results import write_run
from menagerie.harness.timing import Budget

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RENDER_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "render_report_html.py"


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    """A real run of elementwise.bias_gelu (both tiny cases, fwd and bwd) with the smallest budgets."""
    config = runner.RunConfig(
        size="tiny",
        device=torch.device("cpu"),
        timer="cpu",
        seeds=1,
        modes=("fwd", "bwd"),
        budget=Budget(warmup_s=0.001, measure_s=0.001, min_reps=3, max_reps=3),
    )
    record = runner.run(registry.select(["elementwise.bias_gelu"]), config, command=["test_report"])
    return write_run(record, tmp_path_factory.mktemp("runs") / "run.json")


@pytest.fixture(scope="module")
def record(run_file):
    return json.loads(run_file.read_text())


@pytest.fixture(scope="module")
def built(record, tmp_path_factory):
    return report.build_report(record, tmp_path_factory.mktemp("report"))


class _Tables(HTMLParser):
    """Cells of every table row, per table id."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self._table, self._row, self._cell = {}, [], None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            self._table.append(tuple(self._row))


def _parse(path: Path) -> _Tables:
    parser = _Tables()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_plots_are_valid_png_images(built):
    assert set(built.plots) == {"latency", "speedup", "roofline"}
    for path in built.plots.values():
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 400 and image.height >= 300
            assert len(image.convert("L").getcolors(maxcolors=256)) > 8  # drawn on, not blank


def test_html_names_every_row_and_embeds_its_images(built, record):
    page = _parse(built.html)
    header, *lines = page.tables["rows"]
    assert header[: len(report.COLUMNS)] == report.COLUMNS
    keys = {line[:6] for line in lines}
    assert len(lines) == len(record["rows"])
    for row in record["rows"]:
        assert (row["benchmark"], row["case"], row["impl"], row["dtype"], row["mode"], row["status"]) in keys
    assert {"ok", "skipped"} <= {line[5] for line in lines}
    assert len(page.images) == 3 and all(src.startswith("data:image/png;base64,") for src in page.images)
    text = built.html.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained: nothing fetched
    assert record["provenance"]["device"] in text and "copy_gbps" in text


def test_markdown_has_one_table_line_per_row(built, record):
    lines = built.markdown.read_text().splitlines()
    assert lines[0].startswith(f"Measured on {record['provenance']['device']}") and "`test_report`" in lines[0]
    header = "| " + " | ".join(report.COLUMNS) + " |"
    start = lines.index(header)
    table = [line for line in lines[start + 2 :] if line.startswith("| ")][: len(record["rows"])]
    assert len(table) == len(record["rows"])
    for line, row in zip(table, record["rows"]):
        cells = (row["benchmark"], row["case"], row["impl"], row["dtype"], row["mode"])
        assert line.startswith("| " + " | ".join(cells) + " |")
    assert "torch.compile peer runs on CUDA only" in built.markdown.read_text()  # skip reasons are listed


def replicated(record, factor):
    """Three replicates of ``record`` with every median times ``factor``, jittered by 1%."""
    copies = []
    for jitter in (1.0, 1.01, 0.99):
        copied = copy.deepcopy(record)
        for row in copied["rows"]:
            row["replicate_medians_s"] = [factor * jitter * median for median in row["replicate_medians_s"]]
        copies.append(copied)
    return copies


def test_the_gate_against_a_baseline_is_in_both_pages(record, tmp_path):
    # The baseline is twice as slow: the run is an improvement on it.
    gated = gate(replicated(record, 2.0), replicated(record, 1.0))
    files = report.build_report(record, tmp_path, gated)
    header, *lines = _parse(files.html).tables["comparison"]
    assert header == GATE_COLUMNS and len(lines) == len(record["rows"])
    verdicts = {line[-1].split(":")[0] for line in lines}
    assert verdicts == {"improvement", "skipped"}
    markdown = files.markdown.read_text()
    assert "| new/base |" in markdown and "Benjamini–Hochberg" in markdown


def test_cli_report_writes_every_file(run_file, tmp_path, capsys):
    assert main(["report", str(run_file), "--baseline", str(run_file.parent), "--out", str(tmp_path / "out")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    names = {path.name for path in (tmp_path / "out").iterdir()}
    assert names == {"report.html", "report.md", "latency.png", "speedup.png", "roofline.png"}
    assert f"({len(json.loads(run_file.read_text())['rows'])} rows)" in out and "baseline" in out


def test_report_without_rows_is_an_error(record, tmp_path):
    with pytest.raises(report.ReportError, match="no rows"):
        report.build_report({**record, "rows": []}, tmp_path)


def _no_rows(path: Path, record: dict) -> Path:
    path.write_text(json.dumps({**record, "rows": []}))
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda path, record: path / "missing.json", "cannot read results file"),
        (lambda path, record: (path / "bad.json", (path / "bad.json").write_text("{not json"))[0], "is not JSON"),
        (lambda path, record: (path / "x.json", (path / "x.json").write_text('{"rows": 3}'))[0], "not a valid"),
        (lambda path, record: _no_rows(path / "empty.json", record), "no rows"),
    ],
)
def test_cli_report_rejects_bad_input_with_exit_2(make, message, record, tmp_path, capsys):
    path = make(tmp_path, record)
    assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps the one-line message at the terminal's width
    assert err.startswith("menagerie report: error:") and message in err


def test_cli_report_rejects_a_bad_baseline(run_file, tmp_path, capsys):
    assert main(["report", str(run_file), "--baseline", str(tmp_path / "nope.json"), "--out", str(tmp_path)]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_headless_chromium_renders_the_page(built, record, tmp_path):
    if not any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; `make test` installs it as root)")
    screenshot = tmp_path / "page.png"
    done = subprocess.run(
        [sys.executable, str(RENDER_SCRIPT), str(built.html), "--screenshot", str(screenshot)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    counts = json.loads(done.stdout)
    assert counts == {
        "images": 3,
        "decoded": 3,
        "rows": len(record["rows"]),
        "title": f"menagerie report — {record['provenance']['device']}",
    }
    with Image.open(screenshot) as image:
        assert image.size == (1400, 2400) and len(image.convert("L").getcolors(maxcolors=256)) > 8


def widened(template: dict, rows: list[tuple[str, str, str, str, float, float]]) -> dict:
    """``template`` (a real record) with its rows replaced by timed rows (benchmark, case, impl, mode, FLOPs, bytes),
    each a copy of the template's first timed row: valid against the schema, every row distinct."""
    from menagerie.harness import results

    timed = next(row for row in template["rows"] if row["stats"])
    record = {**copy.deepcopy(template), "rows": []}
    for index, (bench, case, impl, mode, flops, moved) in enumerate(rows):
        row = copy.deepcopy(timed)
        row.update(benchmark=bench, case=case, impl=impl, mode=mode, role="variant")
        row["cost"].update(flops=flops, bytes=moved)
        row["stats"]["median_s"] = 1e-4 * (1 + index % 17)
        record["rows"].append(row)
    results.validate(record)
    return record


def test_a_report_of_every_registered_benchmark_renders_every_row(record, tmp_path):
    rows = [
        (bench.name, case.name, impl.name, mode, 1e9 * (1 + index), 1e8 * (1 + index % 5))
        for bench in registry.select()
        for index, case in enumerate(bench.cases["tiny"])
        for impl in bench.impls
        for mode in bench.modes
    ]
    assert len({row[0] for row in rows}) > 11  # more benchmarks than the old fixed list of marker shapes
    files = report.build_report(widened(record, rows), tmp_path)
    html_rows = _parse(files.html).tables["rows"]
    assert len(html_rows) - 1 == len(rows)
    for path in files.plots.values():
        assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_a_report_of_40_benchmarks_by_6_implementations_renders(record, tmp_path):
    rows = [
        (f"family{b % 8}.op{b}", "one", f"impl{i}", "fwd", 1e9 * (b + 1), 1e8 * (i + 1))
        for b in range(40)
        for i in range(6)
    ]
    files = report.build_report(widened(record, rows), tmp_path)
    assert len(_parse(files.html).tables["rows"]) - 1 == 240
    with Image.open(files.plots["roofline"]) as image:
        assert image.size[0] > 500 and len(image.convert("L").getcolors(maxcolors=65536)) > 8
