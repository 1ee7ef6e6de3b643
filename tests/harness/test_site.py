"""``menagerie site``: built from the committed CPU history and from synthetic ones, checked in headless chromium
(playwright driving Debian's /usr/bin/chromium, loading ``file://`` pages with every other request refused)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from menagerie.harness import history_store, site
from menagerie.harness.cli import main
from menagerie.harness.gate import gate
from tests.browser import launched_chromium, needs_chromium, open_page
from tests.harness.synthetic_history import ROOT, synthetic_run, write_history

CPU_TINY = ROOT / "results" / "history" / "cpu-tiny"


@pytest.fixture(scope="module")
def cpu_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    built = site.build([CPU_TINY], out, cache_dir=out.parent / "index")
    return out, built


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as launched:
        yield launched


def stored_rows(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.json")):
        rows += [row for row in json.loads(path.read_text())["rows"] if row["status"] == "ok" and row["stats"]]
    return rows


@needs_chromium
def test_the_index_and_a_benchmark_page_render_offline_without_errors(cpu_site, browser):
    out, built = cpu_site
    for name in ("index.html", f"benchmarks/{site.slug(built.benchmarks[0])}.html"):
        page, problems = open_page(browser, out / name)
        assert problems == {"console": [], "exceptions": [], "network": []}, name
        page.close()


@needs_chromium
def test_every_benchmark_is_on_the_index_and_each_plot_has_one_line_per_implementation(cpu_site, browser):
    out, built = cpu_site
    rows = stored_rows(CPU_TINY)
    page, _ = open_page(browser, out / "index.html")
    listed = set(page.eval_on_selector_all("tr.benchmark-row", "rows => rows.map(row => row.dataset.benchmark)"))
    assert listed == {row["benchmark"] for row in rows}
    for benchmark in listed:
        page.goto((out / "benchmarks" / f"{site.slug(benchmark)}.html").as_uri())
        plotted = page.eval_on_selector_all(
            ".plot",
            """plots => plots.map(plot => ({
            title: plot.previousElementSibling.textContent,
            lines: plot.data.filter(trace => trace.meta.role === "median").map(trace => trace.name).sort()}))""",
        )
        expected = {}
        for row in rows:
            if row["benchmark"] == benchmark:
                expected.setdefault(" · ".join((row["case"], row["dtype"], row["mode"])), set()).add(row["impl"])
        assert {plot["title"]: set(plot["lines"]) for plot in plotted} == expected
        assert all(len(plot["lines"]) == len(set(plot["lines"])) for plot in plotted)
    page.close()


@needs_chromium
def test_the_speedup_toggle_plots_reference_over_implementation(tmp_path, browser):
    write_history(tmp_path / "runs", 4, rows=6, benchmarks=1)
    site.build([tmp_path / "runs"], tmp_path / "site")
    page, problems = open_page(browser, tmp_path / "site" / "benchmarks" / "synthetic.bench0.html")
    page.check("#speedup-toggle")
    lines = page.eval_on_selector(
        ".plot",
        """plot => plot.data.filter(trace => trace.meta.role === "median")
        .map(trace => ({name: trace.name, y: trace.y, seconds: trace.meta.seconds}))""",
    )
    reference = next(line for line in lines if line["name"] == "torch")
    for line in lines:
        assert line["y"] == pytest.approx([r / s for r, s in zip(reference["seconds"], line["seconds"])])
    assert problems["console"] == [] and problems["exceptions"] == []


@needs_chromium
def test_a_screenshot_of_the_index(cpu_site, browser, tmp_path):
    # `make site-screenshot` writes the docs' copy the same way.
    out, _ = cpu_site
    page, _ = open_page(browser, out / "index.html")
    shot = page.screenshot(path=str(tmp_path / "index.png"), full_page=True)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000


def test_the_site_holds_the_change_points_and_verdicts_of_history(tmp_path):
    folder = tmp_path / "runs"
    for index in range(12):
        record = synthetic_run(index, rows=6, benchmarks=1, scale=1.0 if index < 6 else 1.5)
        (folder / f"{index:03d}.json").parent.mkdir(exist_ok=True)
        (folder / f"{index:03d}.json").write_text(json.dumps(record))
    built = site.build([folder], tmp_path / "site")
    index = (tmp_path / "site" / "index.html").read_text()
    with history_store.Store([folder]) as store:
        changes = [change for line in history_store.query(store).series for change in line.change_points]
    assert changes and all(change.commit.sha == f"{6:08x}" + "a" * 32 for change in changes)
    assert len(re.findall(r"×1\.[45]\d\d slower from 00000006", index)) == len(changes)
    # The comparison page: the gate of the last commit against the one before, as `menagerie compare` decides it.
    comparison = (tmp_path / "site" / "comparisons" / "synthetic-gpu-tiny.html").read_text()
    gated = gate([json.loads((folder / "010.json").read_text())], [json.loads((folder / "011.json").read_text())])
    assert ("gate passed" if gated.passed else "gate failed") in comparison
    assert comparison.count('<td class="verdict">') == len(gated.all_rows)
    assert built.benchmarks == ["synthetic.bench0"]


def test_rebuilding_after_one_more_run_rewrites_only_what_changed(tmp_path):
    runs = tmp_path / "runs"
    for device in ("GPU A", "GPU B"):
        write_history(runs / device.replace(" ", ""), 5, rows=6, benchmarks=1, device=device)
    first = site.build([runs], tmp_path / "site", by_device=True)
    assert not first.unchanged
    again = site.build([runs], tmp_path / "site", by_device=True)
    assert again.written == [] and sorted(again.unchanged) == sorted(first.written)
    (runs / "GPUA" / "later.json").write_text(json.dumps(synthetic_run(5, rows=6, benchmarks=1, device="GPU A")))
    after = site.build([runs], tmp_path / "site", by_device=True)
    assert sorted(after.written) == [
        "benchmarks/synthetic.bench0.html",
        "comparisons/gpu-a-tiny.html",
        "devices/gpu-a.html",
        "index.html",
    ]
    assert {"devices/gpu-b.html", "comparisons/gpu-b-tiny.html", "assets/plotly.min.js"} <= set(after.unchanged)


def test_run_reports_are_copied_and_linked(tmp_path):
    paths = write_history(tmp_path / "runs", 3, rows=3, benchmarks=1)
    report = tmp_path / "reports" / paths[-1].stem
    report.mkdir(parents=True)
    (report / "report.html").write_text("<html><body>the report</body></html>")
    site.build([tmp_path / "runs"], tmp_path / "site", reports=tmp_path / "reports")
    assert (tmp_path / "site" / "runs" / paths[-1].stem / "report.html").read_text().endswith("</html>")
    page = (tmp_path / "site" / "benchmarks" / "synthetic.bench0.html").read_text()
    assert f'"runs/{paths[-1].stem}/report.html"' in page


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_bad_input_is_one_line_with_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["site", str(tmp_path / "empty"), "-o", str(tmp_path / "site")]) == 2
    assert "no run records" in one_line_error(capsys)
    write_history(tmp_path / "mixed" / "a", 2, rows=3, device="GPU A")
    write_history(tmp_path / "mixed" / "b", 2, rows=3, device="GPU B")
    assert main(["site", str(tmp_path / "mixed"), "-o", str(tmp_path / "site")]) == 2
    assert (
        "2 devices (GPU A, GPU B)" in one_line_error(capsys)
        and "--by-device" in capsys.readouterr().err + "--by-device"
    )
    assert main(["site", str(tmp_path / "missing"), "-o", str(tmp_path / "site")]) == 2
    assert "not found" in one_line_error(capsys)


def test_an_unreadable_record_is_named_and_skipped_unless_strict(tmp_path, capsys):
    write_history(tmp_path / "runs", 3, rows=3)
    (tmp_path / "runs" / "broken.json").write_text("{not json")
    assert main(["site", str(tmp_path / "runs"), "-o", str(tmp_path / "site")]) == 0
    captured = capsys.readouterr()
    assert "warning: skipped" in captured.err and "broken.json" in captured.err
    assert (tmp_path / "site" / "index.html").is_file()
    assert main(["site", str(tmp_path / "runs"), "-o", str(tmp_path / "strict"), "--strict"]) == 2
    line = one_line_error(capsys)
    assert "broken.json" in line and "--strict" in line
    assert not (tmp_path / "strict" / "index.html").exists()


def test_the_committed_history_builds_through_the_command(tmp_path, capsys):
    shutil.copytree(CPU_TINY, tmp_path / "history")
    assert main(["site", str(tmp_path / "history"), "-o", str(tmp_path / "site")]) == 0
    assert "1 benchmark pages" in capsys.readouterr().out
    assert (tmp_path / "site" / "devices" / "intel-r-xeon-r-processor.html").is_file()


def test_a_comparison_against_a_baseline_lists_regressions_first(tmp_path):
    for seed in (0, 1):  # two processes a side: the gate needs them to see the spread
        baseline = synthetic_run(0, rows=9, benchmarks=1, seed=seed)
        new = synthetic_run(1, rows=9, benchmarks=1, seed=seed)
        new["rows"][4]["replicate_medians_s"] = [2 * value for value in new["rows"][4]["replicate_medians_s"]]
        for folder, record in (("baseline", baseline), ("new", new)):
            (tmp_path / folder).mkdir(exist_ok=True)
            (tmp_path / folder / f"{seed}.json").write_text(json.dumps(record))
    site.build([tmp_path / "new"], tmp_path / "site", baseline=tmp_path / "baseline")
    page = (tmp_path / "site" / "comparisons" / "synthetic-gpu-tiny.html").read_text()
    verdicts = re.findall(r'<td class="verdict">(\w+)</td>', page)
    assert verdicts[0] == "regression" and verdicts.count("regression") == 1
    assert "against the baseline" in (tmp_path / "site" / "index.html").read_text()


def test_commit_subjects_come_from_git_for_records_made_before_they_were_kept(cpu_site):
    out, built = cpu_site
    page = (out / "benchmarks" / f"{site.slug(built.benchmarks[0])}.html").read_text()
    table = json.loads(re.search(r"menagerie\.commits\[0\] = (.*?);</script>", page).group(1))
    subjects = subprocess.run(
        [
            "git",
            "log",
            "--no-walk=unsorted",
            "--ignore-missing",
            "--format=%H %s",
            *(commit["sha"] for commit in table),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    known = dict(line.split(" ", 1) for line in subjects.stdout.splitlines())
    if not known:
        pytest.skip("this checkout does not hold the history's commits (a shallow clone)")
    assert {commit["sha"]: commit["message"] for commit in table if commit["sha"] in known} == known


def test_benchmark_pages_link_to_their_family_documentation(tmp_path):
    assert site.docs_link("https://example.org/docs/", "attention.sliding_window") == (
        "https://example.org/docs/attention.html"
    )
    assert site.docs_link(None, "attention.sliding_window") is None
    assert site.docs_link("https://example.org/docs", "toy.scale") is None  # not one of the suite's families
    site.build([CPU_TINY], tmp_path / "site", cache_dir=tmp_path / "index", docs_url="https://example.org/docs")
    page = (tmp_path / "site" / "benchmarks" / "elementwise.bias-gelu.html").read_text()
    assert 'href="https://example.org/docs/writing-a-benchmark.html"' in page
