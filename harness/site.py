"""``menagerie site``: a static, offline website over the run records of one or more folders.

Pages (Jinja2 templates in ``harness/site_templates/``; plots drawn by plotly.js, written once
into ``assets/`` beside the pages, so that the site opens from ``file://`` with no network):

- ``index.html``: one line per (benchmark, device, size, dtype, mode) with a sparkline of its
  recent commits (the geometric mean of its rows, each divided by its latest median), the
  latest verdict, the change points, and filters by family, device, dtype and mode.
- ``benchmarks/<name>.html``: per (case, dtype, mode) a plot of the medians over commits
  (x: commit order; hover: sha, date, subject, versions), one line per implementation with a
  95% band from the replicates, the change points of ``harness/change_points`` dashed, a toggle to
  the speedup over the reference, and a click through to the run's HTML report.
- ``devices/<device>.html``: the roofline of the device's latest run against the ceilings in
  its record, and the published anchors the suite compares against, each with its source.
- ``comparisons/<device>-<size>.html``: the gate (``menagerie compare``) of the latest commit
  against the one before it (or against ``--baseline``), regressions first.

Series, commits and change points are ``harness/history_store``'s (its SQLite index makes a second
build read only new files). Runs of different devices are refused unless ``by_device``: a site
then has a section per device. A run's report is the folder ``menagerie report`` wrote
(``<reports>/<run file stem>/report.html``); found ones are copied into ``runs/``.

Incremental: ``.menagerie-site.json`` holds a digest of each page's inputs (its template
context and the templates); a page whose digest is unchanged is neither rendered nor written,
and pages that are no longer produced are removed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scipy import stats

from menagerie.harness import registry
from menagerie.harness.formatting import format_seconds, slug
from menagerie.harness.history_store import ChangePoint, Commit, HistoryError, RowKey, Run, Series, Store, query
from menagerie.harness.results import MEASURED_STATUSES, ResultError, load_run, write_text_atomically

TEMPLATES = Path(__file__).with_name("site_templates")
MANIFEST = ".menagerie-site.json"
DEFAULT_RECENT = 30
# The documentation page of each of the suite's families (docs/<page>.md, built by `make docs`), linked from its
# benchmarks' pages when the site is given the docs' address.
DOCS_PAGES = {"attention": "attention.html", "ssm": "ssm.html", "sae": "sae.html", "resnet": "resnet.html",
              "loaders": "resnet.html", "elementwise": "writing-a-benchmark.html"}  # fmt: skip


def docs_link(docs_url: str | None, benchmark: str) -> str | None:
    """The address of ``benchmark``'s family page in the documentation, or None (no address, or not a suite family)."""
    page = DOCS_PAGES.get(benchmark.split(".")[0])
    return f"{docs_url.rstrip('/')}/{page}" if docs_url and page else None


SPARK_WIDTH, SPARK_HEIGHT = 120, 24
# Worst first: the order of verdicts on the index and of rows on a comparison page.
VERDICT_ORDER = (
    "regression",
    "error",
    "mutates-inputs",
    "wrong-after-timing",
    "accuracy_failed",
    "missing",
    "missing_dtype",
    "newly_skipped",
    "params_changed",
    "undecided",
    "underpowered",
    "improvement",
    "unchanged",
    "skipped",
    "new",
)


class SiteError(ValueError):
    """Input the site cannot be built from: reported in one line, exit 2."""


@dataclass
class SiteResult:
    out: Path
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    benchmarks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Context:
    device: str
    size: str
    timer: str | None

    @property
    def slug(self) -> str:
        return slug(f"{self.device}-{self.size}")


# ---- reading ----


def _contexts(runs: list[Run]) -> list[Context]:
    return sorted(
        {Context(run.device, run.size, run.timer) for run in runs},
        key=lambda context: (context.device, context.size, str(context.timer)),
    )


def _messages(runs: list[Run]) -> dict[str, str]:
    """Subject lines by sha: from the records, else from git in this folder for records made before they were kept."""
    found = {run.sha: run.message for run in runs if run.sha and run.message}
    missing = sorted({run.sha for run in runs if run.sha and run.sha not in found})
    if missing:
        try:
            # --ignore-missing: a sha this checkout does not hold (another fork, a rewritten history) is passed over.
            done = subprocess.run(
                ["git", "log", "--no-walk=unsorted", "--ignore-missing", "--format=%H%x00%s", *missing],
                capture_output=True,
                text=True,
                timeout=30,
            )
            lines = done.stdout.splitlines() if done.returncode == 0 else []
        except (OSError, subprocess.TimeoutExpired):
            lines = []
        found.update(line.split("\0", 1) for line in lines if "\0" in line)
    return found


@functools.cache
def _t_quantile(freedom: int) -> float:
    return float(stats.t.ppf(0.975, freedom))


def _band(values: Sequence[float]) -> tuple[float, float] | None:
    """A 95% interval of the geometric mean of a point's replicate medians (t on the logs); None for one replicate."""
    if len(values) < 2:
        return None
    logs = [math.log(value) for value in values]
    count = len(logs)
    centre = sum(logs) / count
    deviation = math.sqrt(sum((value - centre) ** 2 for value in logs) / (count - 1))
    half = _t_quantile(count - 1) * deviation / math.sqrt(count)
    return math.exp(centre - half), math.exp(centre + half)


# ---- building blocks of the pages ----


def _sparkline(series: list[Series], commits: list[Commit]) -> str:
    """SVG polyline points: per recent commit, the geometric mean over rows of median / the row's latest median."""
    logs: dict[int, list[float]] = {}  # per recent commit's position, log(median / latest median) of each row
    position = {id(commit): index for index, commit in enumerate(commits)}
    for line in series:
        latest = math.log(line.points[-1].median_s)
        for point in line.points[-len(commits) :]:
            if id(point.commit) in position:
                logs.setdefault(position[id(point.commit)], []).append(math.log(point.median_s) - latest)
    ratios = [math.exp(sum(values) / len(values)) for _, values in sorted(logs.items())]
    if not ratios:
        return ""
    low, high = min(ratios), max(ratios)
    spread = (high - low) or 1.0
    step = SPARK_WIDTH / max(len(ratios) - 1, 1)
    return " ".join(
        f"{index * step:.1f},{SPARK_HEIGHT - 2 - (value - low) / spread * (SPARK_HEIGHT - 4):.1f}"
        for index, value in enumerate(ratios)
    )


def _change_text(change: ChangePoint, key: RowKey) -> str:
    direction = "slower" if change.ratio > 1 else "faster"
    return f"×{change.ratio:.3f} {direction} from {change.commit.label} ({key[2]} {key[1]})"


def _verdict_summary(verdicts: list[str]) -> tuple[str, str]:
    """("1 regression · 4 unchanged", worst verdict) of a group's rows."""
    if not verdicts:
        return "no comparison", "none"
    counts = {verdict: verdicts.count(verdict) for verdict in VERDICT_ORDER if verdict in verdicts}
    return " · ".join(f"{count} {verdict}" for verdict, count in counts.items()), next(iter(counts))


def _figure(panel: list[Series], commits: list[Commit], reference: str | None, reports: dict[str, str]) -> dict:
    """plotly traces and layout of one (case, dtype, mode) panel; hover text is filled in by site.js from COMMITS."""
    position = {commit: index for index, commit in enumerate(commits)}
    reference_medians = {
        point.commit: point.median_s for line in panel if line.key[2] == reference for point in line.points
    }
    traces, shapes = [], []
    for number, line in enumerate(panel):
        impl = line.key[2]
        colour = f"hsl({(number * 67) % 360}, 65%, 42%)"
        x = [position[point.commit] for point in line.points]
        bands = [_band(point.replicate_medians_s) for point in line.points]
        banded = [(index, band) for index, band in zip(x, bands) if band]
        if banded:
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "fill": "toself",
                    "hoverinfo": "skip",
                    "x": [i for i, _ in banded] + [i for i, _ in reversed(banded)],
                    "y": [b[1] for _, b in banded] + [b[0] for _, b in reversed(banded)],
                    "line": {"width": 0},
                    "fillcolor": colour.replace("hsl", "hsla").replace(")", ", 0.15)"),
                    "showlegend": False,
                    "legendgroup": impl,
                    "meta": {"role": "band", "impl": impl},
                }
            )
        speedups = [
            reference_medians[point.commit] / point.median_s if point.commit in reference_medians else None
            for point in line.points
        ]
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": impl,
                "legendgroup": impl,
                "x": x,
                "y": [point.median_s for point in line.points],
                "line": {"color": colour, "width": 1.5},
                "marker": {"size": 5},
                "customdata": [reports.get(point.commit.runs[-1], "") for point in line.points],
                "meta": {"role": "median", "impl": impl, "reference": impl == reference, "speedup": speedups},
            }
        )
        for change in line.change_points:
            at = position[change.commit] - 0.5
            shapes.append(
                {
                    "type": "line",
                    "x0": at,
                    "x1": at,
                    "y0": 0,
                    "y1": 1,
                    "yref": "paper",
                    "line": {"color": colour, "dash": "dash", "width": 1},
                    "label": {"text": f"×{change.ratio:.2f}", "textposition": "end", "font": {"size": 10}},
                }
            )
    layout = {
        "height": 340,
        "margin": {"l": 70, "r": 20, "t": 10, "b": 40},
        "hovermode": "closest",
        "xaxis": {
            "title": {"text": "commit (oldest left)"},
            "range": [-0.5, len(commits) - 0.5],
            "zeroline": False,
            "tickvals": list(range(len(commits))),
            "ticktext": [commit.label for commit in commits],
            "nticks": 30,
        },
        "yaxis": {"title": {"text": "median time per call (s)"}, "type": "log"},
        "shapes": shapes,
        "legend": {"orientation": "h", "y": -0.25},
    }
    return {"data": traces, "layout": layout}


def _commit_table(commits: list[Commit], runs: dict[str, Run], messages: dict[str, str]) -> list[dict]:
    table = []
    for commit in commits:
        run = runs[commit.runs[-1]]
        table.append(
            {
                "label": commit.label,
                "sha": commit.sha or "no git",
                "date": commit.timestamp,
                "message": messages.get(commit.sha or "", ""),
                "versions": run.versions,
                "runs": len(commit.runs),
            }
        )
    return table


# ---- the roofline and anchors of a device ----


def _roofline(record: dict) -> dict:
    """plotly traces of the run's timed rows with FLOPs and bytes (one trace per benchmark), and its ceilings."""
    placed = [
        row
        for row in record["rows"]
        if row["status"] in MEASURED_STATUSES and row.get("stats") and row["cost"]["flops"] and row["cost"]["bytes"]
    ]
    traces, shapes, notes = [], [], []
    by_benchmark: dict[str, list[dict]] = {}
    for row in placed:
        by_benchmark.setdefault(row["benchmark"], []).append(row)
    for name, rows in sorted(by_benchmark.items()):
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": name,
                "x": [row["cost"]["flops"] / row["cost"]["bytes"] for row in rows],
                "y": [row["cost"]["flops"] / row["stats"]["median_s"] for row in rows],
                "text": [f"{row['impl']} · {row['case']} · {row['dtype']} · {row['mode']}" for row in rows],
                "hovertemplate": "%{text}<br>%{x:.3g} FLOP/B, %{y:.3g} FLOP/s<extra>" + name + "</extra>",
                "meta": {"role": "roofline"},
            }
        )
    intensities = [x for trace in traces for x in trace["x"]] or [1.0]
    low, high = min(intensities) / 10, max(intensities) * 10
    for dtype, ceilings in sorted(record.get("ceilings", {}).items()):
        plateaus = [c["value"] * 1e12 for name, c in ceilings.items() if name.endswith("_tflops")]
        for name, ceiling in sorted(ceilings.items()):
            if name.endswith("_tflops"):
                rate = ceiling["value"] * 1e12
                shapes.append(
                    {
                        "type": "line",
                        "x0": low,
                        "x1": high,
                        "y0": rate,
                        "y1": rate,
                        "line": {"color": "grey", "width": 1},
                    }
                )
            elif name == "copy_gbps":  # the bandwidth slope rises until it meets the highest plateau
                bandwidth = ceiling["value"] * 1e9
                ridge = min(high, max(plateaus, default=bandwidth * high) / bandwidth)
                shapes.append(
                    {
                        "type": "line",
                        "x0": low,
                        "x1": ridge,
                        "y0": bandwidth * low,
                        "y1": bandwidth * ridge,
                        "line": {"color": "grey", "width": 1, "dash": "dot"},
                    }
                )
            notes.append(
                {
                    "dtype": dtype,
                    "name": name,
                    "value": f"{ceiling['value']:.4g} {ceiling['unit']}",
                    "source": ceiling.get("source", ""),
                    "detail": ceiling.get("detail", ""),
                }
            )
    layout = {
        "height": 480,
        "margin": {"l": 70, "r": 20, "t": 10, "b": 50},
        "shapes": shapes,
        "xaxis": {
            "type": "log",
            "title": {"text": "arithmetic intensity (FLOPs / minimal byte moved)"},
            "range": [math.log10(low), math.log10(high)],
        },
        "yaxis": {"type": "log", "title": {"text": "achieved FLOP/s"}},
    }
    return {"figure": {"data": traces, "layout": layout}, "ceilings": notes, "rows": len(placed)}


# ---- comparisons ----


def _record(path: str, loaded: dict[str, dict]) -> dict:
    """The run record at ``path``, read once per build (the gate and the device page both read the latest)."""
    if path not in loaded:
        loaded[path] = load_run(Path(path))
    return loaded[path]


def _compare(
    baseline_paths: Sequence[str], new_paths: Sequence[str], loaded: dict[str, dict]
) -> tuple[object, list[str]]:
    from menagerie.harness.gate import gate

    problems = []
    for path in {*baseline_paths, *new_paths}:
        try:
            _record(path, loaded)
        except ResultError as error:
            problems.append(f"{path}: {error}")
    baseline = [loaded[path] for path in baseline_paths if path in loaded]
    new = [loaded[path] for path in new_paths if path in loaded]
    return (gate(baseline, new) if baseline and new else None), problems


def _comparison_page(title: str, baseline_label: str, new_label: str, result) -> dict:
    order = {verdict: index for index, verdict in enumerate(VERDICT_ORDER)}
    rows = sorted(result.all_rows, key=lambda row: (order.get(row.verdict, len(order)), row.key))
    return {
        "title": title,
        "baseline": baseline_label,
        "new": new_label,
        "passed": result.passed,
        "reasons": result.reasons,
        "findings": [f"{finding.kind}: {finding.detail}" for finding in result.findings],
        "rows": [
            {
                "key": " · ".join(row.key),
                "verdict": row.verdict,
                "failing": row.failing,
                "ratio": f"{row.ratio:.3f}" if row.ratio else "-",
                "ci": f"{row.ci[0]:.3f}–{row.ci[1]:.3f}" if row.ci else "-",
                "baseline": format_seconds(row.baseline_s) if row.baseline_s else "-",
                "new": format_seconds(row.new_s) if row.new_s else "-",
                "detail": row.detail,
            }
            for row in rows
        ],
    }


# ---- the site ----


class _Writer:
    """Writes the site's files, each only when the digest of its inputs changed (see the module docstring)."""

    def __init__(self, out: Path, result: SiteResult):
        import jinja2

        self.out, self.result = out, result
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.policies["json.dumps_kwargs"] = {"separators": (",", ":")}  # `tojson`: HTML-safe, compact
        self.templates = _digest(*(path.read_bytes() for path in sorted(TEMPLATES.iterdir())))
        try:
            self.previous = json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).is_file() else {}
        except ValueError:
            self.previous = {}
        self.digests: dict[str, str] = {}

    def changed(self, name: str, digest: str) -> bool:
        """Records ``name``'s digest; False (and counted unchanged) when the file is there with this digest."""
        self.digests[name] = digest
        if self.previous.get(name) == digest and (self.out / name).is_file():
            self.result.unchanged.append(name)
            return False
        self.result.written.append(name)
        return True

    def page(self, name: str, template: str, **context) -> None:
        context["root"] = "../" * name.count("/")
        inputs = json.dumps(context, sort_keys=True, default=str).encode()
        if self.changed(name, _digest(self.templates.encode(), inputs)):
            write_text_atomically(self.env.get_template(template).render(**context), self.out / name)

    def copy(self, name: str, source: Path) -> None:
        if self.changed(name, _digest(source.read_bytes())):
            (self.out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, self.out / name)

    def finish(self) -> None:
        """Removes the files no longer produced, and writes the manifest."""
        for name in sorted(set(self.previous) - set(self.digests)):
            if (self.out / name).is_file():
                (self.out / name).unlink()
                self.result.removed.append(name)
        write_text_atomically(json.dumps(self.digests, indent=0, sort_keys=True) + "\n", self.out / MANIFEST)


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def _copy_assets(writer: _Writer) -> None:
    import plotly

    writer.copy("assets/plotly.min.js", Path(plotly.__file__).parent / "package_data" / "plotly.min.js")
    writer.copy("assets/site.js", TEMPLATES / "site.js")
    writer.copy("assets/site.css", TEMPLATES / "site.css")


def _copy_reports(runs: list[Run], reports: Path | None, writer: _Writer) -> dict[str, str]:
    """Copies each run's report folder (``<reports>/<run file stem>/``) into ``runs/``; per run path, the
    site-relative link to its ``report.html``."""
    links = {}
    if reports is None or not reports.is_dir():
        return links
    for run in runs:
        stem = Path(run.path).stem
        for source in sorted((reports / stem).glob("*")) if (reports / stem / "report.html").is_file() else ():
            if source.is_file():
                writer.copy(f"runs/{stem}/{source.name}", source)
        if (reports / stem / "report.html").is_file():
            links[run.path] = f"runs/{stem}/report.html"
    return links


def build(
    folders: Sequence[Path],
    out: Path,
    *,
    by_device: bool = False,
    strict: bool = False,
    baseline: Path | None = None,
    reports: Path | None = None,
    recent: int = DEFAULT_RECENT,
    cache_dir: Path | None = None,
    docs_url: str | None = None,
    on_progress: Callable[[str], None] = lambda message: None,
) -> SiteResult:
    """Writes the site for the run records in ``folders`` into ``out``; see the module docstring."""
    if recent < 2:
        raise SiteError(f"--recent must be at least 2, got {recent}")
    try:
        store = Store(folders, cache_dir=cache_dir)
    except HistoryError as error:
        raise SiteError(str(error)) from None
    result = SiteResult(out=out)
    with store:
        on_progress("reading the run records")
        skipped = store.sync()
        if strict and skipped:
            raise SiteError(f"{skipped[0]} (--strict: no unreadable record is passed over)")
        result.warnings += skipped
        runs = store.runs()
        if not runs:
            raise SiteError(f"no run records in {', '.join(map(str, folders))}")
        devices = sorted({run.device for run in runs})
        if len(devices) > 1 and not by_device:
            raise SiteError(
                f"the records come from {len(devices)} devices ({', '.join(devices)}): give --by-device "
                "for a section per device, or one device's folders"
            )
        run_of = {run.path: run for run in runs}
        messages = _messages(runs)
        out.mkdir(parents=True, exist_ok=True)
        writer = _Writer(out, result)
        _copy_assets(writer)
        report_links = _copy_reports(runs, reports, writer)

        baseline_runs = []
        if baseline is not None:
            try:
                with Store([baseline], cache_dir=cache_dir) as baseline_store:
                    result.warnings += baseline_store.sync()
                    baseline_runs = baseline_store.runs()
            except HistoryError as error:
                raise SiteError(f"--baseline: {error}") from None

        index_rows, benchmark_panels, comparisons, device_pages = [], {}, [], {}
        loaded: dict[str, dict] = {}  # run records read in full, by path
        for context in _contexts(runs):
            on_progress(f"series of {context.device} · size {context.size}")
            found = query(store, device=context.device, size=context.size, timer=context.timer)
            commits = found.commits
            runs_here = [
                run
                for run in runs
                if (run.device, run.size, run.timer) == (context.device, context.size, context.timer)
            ]
            # The latest commit against the one before it, or against --baseline's runs of this context.
            verdicts: dict[RowKey, str] = {}
            base = [
                run.path
                for run in baseline_runs
                if (run.device, run.size, run.timer) == (context.device, context.size, context.timer)
            ]
            against = "the baseline" if base else (commits[-2].label if len(commits) > 1 else None)
            if not base and len(commits) > 1:
                base = list(commits[-2].runs)
            if base and commits:
                gated, problems = _compare(base, list(commits[-1].runs), loaded)
                result.warnings += problems
                if gated is not None:
                    verdicts = {row.key: row.verdict for row in gated.rows}
                    name = f"comparisons/{context.slug}.html"
                    comparisons.append(
                        {
                            "href": name,
                            "context": context,
                            "passed": gated.passed,
                            "against": against,
                            "new": commits[-1].label,
                        }
                    )
                    writer.page(
                        name,
                        "comparison.html.j2",
                        context=vars(context),
                        **_comparison_page(
                            f"{context.device} · size {context.size}", against, commits[-1].label, gated
                        ),
                    )
            recent_commits = commits[-recent:]
            groups: dict[tuple[str, str, str], list[Series]] = {}
            for line in found.series:
                benchmark, case, impl, dtype, mode = line.key
                groups.setdefault((benchmark, dtype, mode), []).append(line)
                benchmark_panels.setdefault(benchmark, {}).setdefault(context, {}).setdefault(
                    (case, dtype, mode), []
                ).append(line)
            for (benchmark, dtype, mode), lines in sorted(groups.items()):
                summary, worst = _verdict_summary([verdicts[line.key] for line in lines if line.key in verdicts])
                index_rows.append(
                    {
                        "benchmark": benchmark,
                        "family": benchmark.split(".")[0],
                        "device": context.device,
                        "size": context.size,
                        "dtype": dtype,
                        "mode": mode,
                        "rows": len(lines),
                        "spark": _sparkline(lines, recent_commits),
                        "latest": format_seconds(min(line.points[-1].median_s for line in lines)),
                        "verdict": summary,
                        "worst": worst,
                        "changes": [_change_text(change, line.key) for line in lines for change in line.change_points],
                        "href": f"benchmarks/{slug(benchmark)}.html",
                    }
                )
            latest = runs_here[-1]
            device_pages.setdefault(context.device, []).append((context, latest, commits))
            result.warnings += [warning for warning in found.warnings if warning not in result.warnings]

        anchors = [vars(figure) for figure in registry.published()]
        references: dict[tuple[str, Context], str] = {}  # as the latest run of each context names them
        for device, sections in device_pages.items():
            on_progress(f"device page of {device}")
            rendered = []
            for context, latest, commits in sections:
                try:
                    record = _record(latest.path, loaded)
                except ResultError as error:
                    result.warnings.append(f"{latest.path}: {error}")
                    continue
                references.update(
                    {(row["benchmark"], context): row["impl"] for row in record["rows"] if row["role"] == "reference"}
                )
                rendered.append(
                    {
                        "context": vars(context),
                        "run": Path(latest.path).name,
                        "commit": commits[-1].label if commits else "",
                        **_roofline(record),
                    }
                )
            here_first = sorted(
                anchors,
                key=lambda figure: (
                    figure["device"].lower() not in device.lower(),
                    figure["subject"],
                    figure["device"],
                ),
            )
            writer.page(
                f"devices/{slug(device)}.html", "device.html.j2", device=device, sections=rendered, anchors=here_first
            )

        for benchmark, contexts in sorted(benchmark_panels.items()):
            on_progress(f"page of {benchmark}")
            sections = []
            for context, panels in contexts.items():
                found_commits = sorted(
                    {point.commit for lines in panels.values() for line in lines for point in line.points},
                    key=lambda commit: (commit.time, commit.runs),
                )
                reference = references.get((benchmark, context))
                figures = [
                    {
                        "title": " · ".join(panel_key),
                        "impls": sorted({line.key[2] for line in lines}),
                        "figure": _figure(
                            sorted(lines, key=lambda line: line.key[2]), found_commits, reference, report_links
                        ),
                    }
                    for panel_key, lines in sorted(panels.items())
                ]
                sections.append(
                    {
                        "context": vars(context),
                        "reference": reference,
                        "panels": figures,
                        "commits": _commit_table(found_commits, run_of, messages),
                    }
                )
            writer.page(
                f"benchmarks/{slug(benchmark)}.html",
                "benchmark.html.j2",
                benchmark=benchmark,
                sections=sections,
                docs=docs_link(docs_url, benchmark),
            )
            result.benchmarks.append(benchmark)

        filters = {name: sorted({row[name] for row in index_rows}) for name in ("family", "device", "dtype", "mode")}
        writer.page(
            "index.html",
            "index.html.j2",
            rows=index_rows,
            filters=filters,
            comparisons=[{**item, "context": vars(item["context"])} for item in comparisons],
            devices=[{"name": device, "href": f"devices/{slug(device)}.html"} for device in device_pages],
            runs=len(runs),
            folders=[str(folder) for folder in folders],
            warnings=result.warnings,
        )
        writer.finish()
    return result
