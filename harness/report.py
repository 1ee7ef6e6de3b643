"""Reports from a run record: PNG plots, one self-contained HTML page, a Markdown table.

Plots (matplotlib's Agg canvas, no display needed), one panel per
(benchmark, dtype, mode), cases along x in order of size (minimal bytes moved,
then FLOPs, from the benchmark's cost model):

- ``latency.png``: each implementation's median time per call, with the
  percentile-bootstrap 95% CI of the median as a band;
- ``speedup.png``: each non-reference implementation's speedup over the reference
  (reference median / median; above 1 is faster);
- ``roofline.png``: per dtype, the device's ceilings recorded in the run (copy
  bandwidth slope, matmul and FP32 plateaus, each labelled measured or datasheet)
  and every timed row placed at its arithmetic intensity (FLOPs / minimal bytes)
  and achieved FLOP rate, its benchmark shown by colour and its implementation by
  marker shape (both cycle, so any number of either has a style; each has its own
  legend). The exp ceiling has no axis here; the tables' % of roofline accounts for it.

``report.html`` holds the provenance, the ceilings, the plots as base64 data URIs
(nothing external is fetched) and a table of every row, timed or not;
``report.md`` holds the rows table for a README. Given the regression gate's result
against a baseline (``menagerie.harness.gate``), both also hold its verdicts. Only rows with
samples are plotted.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from menagerie.harness.formatting import GATE_COLUMNS, format_number, format_seconds, gate_cells, gate_rule
from menagerie.harness.gate import GateResult
from menagerie.harness.results import write_bytes_atomically, write_text_atomically

COLUMNS = (
    "benchmark",
    "case",
    "impl",
    "dtype",
    "mode",
    "status",
    "median",
    "95% CI",
    "× ref",
    "TFLOP/s",
    "GB/s",
    "% roof",
    "accuracy",
)
PANEL_COLUMNS = 3


class ReportError(ValueError):
    """A run record that cannot be reported (e.g. it has no rows)."""


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    plots: dict[str, Path]  # latency, speedup, roofline


def _accuracy(accuracy: dict | None) -> str:
    if accuracy is None:
        return "-"
    verdict = "pass" if accuracy["passed"] else "FAIL"
    return f"{verdict} · max {accuracy['max_abs_err']:.1e} · rel {accuracy['rel_l2_err']:.1e}"


def row_cells(row: dict) -> tuple[str, ...]:
    """One row's values for ``COLUMNS``, formatted."""
    stats, metrics = row["stats"], row["metrics"]
    interval = f"{format_seconds(stats['ci95_s'][0])} – {format_seconds(stats['ci95_s'][1])}" if stats else "-"
    return (
        row["benchmark"],
        row["case"],
        row["impl"],
        row["dtype"],
        row["mode"],
        row["status"],
        format_seconds(stats and stats["median_s"]),
        interval,
        format_number(metrics["speedup_vs_reference"], ".3g"),
        format_number(metrics["tflops"], ".3g"),
        format_number(metrics["gbps"], ".3g"),
        format_number(metrics["roofline_pct"], ".1f"),
        _accuracy(row["accuracy"]),
    )


# ---- plots ----


def _timed(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["stats"]]


def _panels(rows: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """Timed rows grouped per (benchmark, dtype, mode), in the run's order."""
    panels: dict[tuple[str, str, str], list[dict]] = {}
    for row in _timed(rows):
        panels.setdefault((row["benchmark"], row["dtype"], row["mode"]), []).append(row)
    return panels


def _ordered_cases(rows: list[dict]) -> list[str]:
    sizes = {row["case"]: (row["cost"]["bytes"], row["cost"]["flops"]) for row in rows}
    return sorted(sizes, key=lambda case: sizes[case])


def _colours(rows: list[dict], field: str = "impl") -> dict[str, str]:
    """One colour per value of ``field`` (implementation name by default), the same in every plot; the
    palette cycles, so any number of values has one."""
    palette = [f"C{index}" for index in range(10)]
    names = dict.fromkeys(row[field] for row in rows)
    return {name: palette[index % len(palette)] for index, name in enumerate(names)}


MARKERS = "osD^vP*Xh<>p8d"


def _markers(rows: list[dict], field: str) -> dict[str, str]:
    """One marker shape per value of ``field``, cycling through ``MARKERS``."""
    names = dict.fromkeys(row[field] for row in rows)
    return {name: MARKERS[index % len(MARKERS)] for index, name in enumerate(names)}


def _grid(count: int, width: float = 4.6, height: float = 3.4) -> tuple[Figure, list]:
    """A figure with ``count`` panels (at least one), ``PANEL_COLUMNS`` to a line."""
    count = max(count, 1)
    columns = min(count, PANEL_COLUMNS)
    lines = math.ceil(count / columns)
    figure = Figure(figsize=(width * columns, height * lines), layout="constrained")
    axes = figure.subplots(lines, columns, squeeze=False).ravel().tolist()
    for unused in axes[count:]:
        unused.set_visible(False)
    return figure, axes[:count]


def _placeholder(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()


def _save(figure: Figure, path: Path) -> Path:
    image = io.BytesIO()
    FigureCanvasAgg(figure).print_png(image, metadata={"Software": "menagerie report"})
    return write_bytes_atomically(image.getvalue(), path)


def _subtitle(record: dict) -> str:
    prov = record["provenance"]
    return f"{prov['device']} · torch {prov['torch']} · {prov['timestamp'][:10]} · size {record['config']['size']}"


def plot_latency(record: dict, path: Path) -> Path:
    panels = _panels(record["rows"])
    colours = _colours(record["rows"])
    figure, axes = _grid(len(panels))
    if not panels:
        _placeholder(axes[0], "no row was timed")
    for ax, ((bench, dtype, mode), rows) in zip(axes, panels.items()):
        cases = _ordered_cases(rows)
        for impl in dict.fromkeys(row["impl"] for row in rows):
            mine = {row["case"]: row["stats"] for row in rows if row["impl"] == impl}
            xs = [index for index, case in enumerate(cases) if case in mine]
            stats = [mine[cases[x]] for x in xs]
            ax.plot(xs, [s["median_s"] for s in stats], marker="o", color=colours[impl], label=impl)
            ax.fill_between(
                xs,
                [s["ci95_s"][0] for s in stats],
                [s["ci95_s"][1] for s in stats],
                color=colours[impl],
                alpha=0.25,
                linewidth=0,
            )
        ax.set_yscale("log")
        ax.set_xticks(range(len(cases)), cases, rotation=20, fontsize=8)
        ax.set_title(f"{bench} · {dtype} · {mode}", fontsize=9)
        ax.set_ylabel("median time per call (s)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    figure.suptitle(f"latency with bootstrap 95% CI of the median — {_subtitle(record)}", fontsize=10)
    return _save(figure, path)


def plot_speedup(record: dict, path: Path) -> Path:
    panels = {
        key: rows
        for key, rows in _panels(record["rows"]).items()
        if any(row["metrics"]["speedup_vs_reference"] and row["role"] != "reference" for row in rows)
    }
    colours = _colours(record["rows"])
    figure, axes = _grid(len(panels))
    if not panels:
        _placeholder(axes[0], "no implementation was timed beside its reference")
    for ax, ((bench, dtype, mode), rows) in zip(axes, panels.items()):
        cases = _ordered_cases(rows)
        compared = [row for row in rows if row["role"] != "reference" and row["metrics"]["speedup_vs_reference"]]
        impls = list(dict.fromkeys(row["impl"] for row in compared))
        width = 0.8 / len(impls)
        for offset, impl in enumerate(impls):
            mine = {row["case"]: row["metrics"]["speedup_vs_reference"] for row in compared if row["impl"] == impl}
            xs = [index for index, case in enumerate(cases) if case in mine]
            # Bars grow from 1 (parity): up for faster, down for slower.
            ax.bar(
                [x - 0.4 + width * (offset + 0.5) for x in xs],
                [mine[cases[x]] - 1 for x in xs],
                width,
                bottom=1.0,
                color=colours[impl],
                label=impl,
            )
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_yscale("log")
        speedups = [row["metrics"]["speedup_vs_reference"] for row in compared] + [1.0]
        ax.set_ylim(min(speedups) / 2, max(speedups) * 2)
        ax.set_xticks(range(len(cases)), cases, rotation=20, fontsize=8)
        ax.set_title(f"{bench} · {dtype} · {mode}", fontsize=9)
        ax.set_ylabel("speedup over reference (×)")
        ax.grid(alpha=0.3, axis="y", which="both")
        ax.legend(fontsize=7)
    figure.suptitle(f"speedup over the reference (above 1 is faster) — {_subtitle(record)}", fontsize=10)
    return _save(figure, path)


def plot_roofline(record: dict, path: Path) -> Path:
    """Per dtype: ceilings from the record, and every timed row with FLOPs and bytes as a point."""
    placed = [row for row in _timed(record["rows"]) if row["cost"]["flops"] and row["cost"]["bytes"]]
    dtypes = list(dict.fromkeys(row["dtype"] for row in placed)) or [None]
    colours = _colours(placed, "benchmark")
    markers = _markers(placed, "impl")
    figure, axes = _grid(len(dtypes), width=7.5, height=5.0)
    for ax, dtype in zip(axes, dtypes):
        rows = [row for row in placed if row["dtype"] == dtype]
        if not rows:
            _placeholder(ax, "no timed row with FLOPs and bytes to place")
            continue
        intensities = [row["cost"]["flops"] / row["cost"]["bytes"] for row in rows]
        rates = [row["cost"]["flops"] / row["stats"]["median_s"] for row in rows]
        ceilings = record["ceilings"].get(dtype, {})
        low, high = min(intensities) / 10, max(intensities) * 10
        plateaus = {f"matmul {dtype}": ceilings.get("matmul_tflops"), "FP32 (CUDA cores)": ceilings.get("fp32_tflops")}
        for name, ceiling in plateaus.items():
            if ceiling:
                rate = ceiling["value"] * 1e12
                ax.axhline(rate, color="grey", linestyle="--" if name.startswith("FP32") else "-", linewidth=1)
                ax.annotate(
                    f"{name}: {ceiling['value']:.3g} TFLOP/s [{ceiling['source']}]",
                    (low * 1.3, rate),
                    fontsize=7,
                    va="bottom",
                    color="dimgrey",
                )
        if "copy_gbps" in ceilings:
            bandwidth = ceilings["copy_gbps"]["value"] * 1e9
            # The bandwidth slope rises until it meets the highest plateau (the ridge point).
            top = max((c["value"] * 1e12 for c in plateaus.values() if c), default=bandwidth * high)
            ax.plot(
                [low, min(high, top / bandwidth)],
                [bandwidth * low, min(bandwidth * high, top)],
                color="grey",
                linewidth=1,
            )
            ax.annotate(
                f"copy {ceilings['copy_gbps']['value']:.3g} GB/s [{ceilings['copy_gbps']['source']}]",
                (low * 1.3, bandwidth * low * 1.3),
                fontsize=7,
                va="bottom",
                color="dimgrey",
            )
        for row, x, y in zip(rows, intensities, rates):
            ax.scatter([x], [y], color=colours[row["benchmark"]], marker=markers[row["impl"]], s=28, zorder=3)
        # Two legends: colour names the benchmark, shape the implementation.
        benchmarks = list(dict.fromkeys(row["benchmark"] for row in rows))
        impls = list(dict.fromkeys(row["impl"] for row in rows))
        by_colour = [Line2D([], [], color=colours[name], marker="o", linestyle="", label=name) for name in benchmarks]
        by_shape = [Line2D([], [], color="dimgrey", marker=markers[name], linestyle="", label=name) for name in impls]
        ax.add_artist(
            ax.legend(
                handles=by_colour,
                title="benchmark (colour)",
                fontsize=6,
                title_fontsize=7,
                loc="upper left",
                bbox_to_anchor=(1.01, 1.0),
                ncols=1 + len(by_colour) // 25,
            )
        )
        ax.legend(
            handles=by_shape,
            title="implementation (shape)",
            fontsize=6,
            title_fontsize=7,
            loc="lower left",
            bbox_to_anchor=(1.01, 0.0),
            ncols=1 + len(by_shape) // 25,
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(low, high)
        ax.set_xlabel("arithmetic intensity (FLOPs / minimal byte moved)")
        ax.set_ylabel("achieved FLOP/s")
        ax.set_title(f"roofline · {dtype}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    figure.suptitle(f"roofline against the ceilings in the run record — {_subtitle(record)}", fontsize=10)
    return _save(figure, path)


# ---- HTML and Markdown ----

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.ok td.status { color: #17803d; } tr.skipped td.status, tr.noisy td.status { color: #a06b00; }
tr.accuracy_failed td.status, tr.error td.status, tr.wrong-after-timing td.status,
tr.mutates-inputs td.status, tr.throttled td.status { color: #c0182b; font-weight: bold; }
tr.regression td.verdict, tr.undecided td.verdict, tr.missing td.verdict, tr.newly_skipped td.verdict,
tr.params_changed td.verdict, tr.missing_dtype td.verdict { color: #c0182b; font-weight: bold; }
tr.improvement td.verdict { color: #17803d; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
code { background: #f4f4f4; padding: 1px 4px; }
"""
NUMERIC = {
    "median",
    "95% CI",
    "× ref",
    "TFLOP/s",
    "GB/s",
    "% roof",
    "baseline",
    "new",
    "new/base",
    "spread",
    "threshold",
    "runs",
    "q",
}


def _html_table(
    columns: tuple[str, ...],
    lines: list[tuple[str, ...]],
    table_id: str,
    classes: list[str] | None = None,
    notes: list[str] | None = None,
) -> str:
    head = "".join(f"<th>{html.escape(column)}</th>" for column in columns) + ("<th>reason</th>" if notes else "")
    body = []
    for index, cells in enumerate(lines):
        tds = "".join(
            f'<td class="{"num" if column in NUMERIC else column.replace(" ", "_")}">{html.escape(cell)}</td>'
            for column, cell in zip(columns, cells)
        )
        if notes:
            tds += f"<td>{html.escape(notes[index])}</td>"
        css = f' class="{classes[index]}"' if classes else ""
        body.append(f"<tr{css}>{tds}</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def write_html(record: dict, plots: dict[str, Path], gated: GateResult | None, path: Path) -> Path:
    prov, config = record["provenance"], record["config"]
    git = prov["git"]
    facts = {
        "device": prov["device"],
        "date (UTC)": prov["timestamp"],
        "command": prov["command"],
        "source": f"{git['sha'] or 'not a git checkout'}{' (dirty)' if git['dirty'] else ''}",
        "versions": f"Python {prov['python']} · torch {prov['torch']} · Triton {prov['triton']} · "
        f"CUDA {prov['cuda']} · driver {prov['driver']}",
        "config": f"size {config['size']} · timer {config['timer']} · seeds {config['seeds']}",
    }
    ceilings = [
        (dtype, name, f"{c['value']:.4g} {c['unit']}", c["source"], c["detail"])
        for dtype, found in record["ceilings"].items()
        for name, c in found.items()
    ]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>menagerie report — {html.escape(prov['device'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>menagerie report — {html.escape(prov['device'])}</h1>",
        '<table id="provenance">'
        + "".join(f"<tr><th>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>" for key, value in facts.items())
        + "</table>",
        "<h2>Device ceilings</h2>",
        _html_table(("dtype", "ceiling", "value", "source", "how"), ceilings, "ceilings"),
        "<h2>Plots</h2>",
        *(
            f'<figure><img alt="{name}" src="{_data_uri(plot)}"><figcaption>{name}</figcaption></figure>'
            for name, plot in plots.items()
        ),
        f"<h2>Every row ({len(record['rows'])})</h2>",
        _html_table(
            COLUMNS,
            [row_cells(row) for row in record["rows"]],
            "rows",
            classes=[row["status"] for row in record["rows"]],
            notes=[row["reason"] for row in record["rows"]],
        ),
    ]
    if gated is not None:
        parts += [
            f"<h2>Against the baseline ({html.escape(gate_rule(gated))})</h2>",
            *(f'<p class="finding">{html.escape(finding)}</p>' for finding in _findings(gated)),
            _html_table(GATE_COLUMNS, gate_cells(gated), "comparison", classes=[row.verdict for row in gated.all_rows]),
        ]
    parts.append("</body></html>")
    write_text_atomically("\n".join(parts) + "\n", path)
    return path


def _markdown_table(columns: tuple[str, ...], lines: list[tuple[str, ...]]) -> str:
    escape = lambda cell: cell.replace("|", "\\|")  # noqa: E731
    align = ["---:" if column in NUMERIC else "---" for column in columns]
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(escape(cell) for cell in cells) + " |" for cells in lines]
    return "\n".join(out)


def _findings(gated: GateResult) -> list[str]:
    """Record-level findings (device, timer, size, dtype mismatches), each said with whether it fails."""
    return [
        f"{finding.kind}{' (fails the gate)' if finding.failing else ''}: {finding.detail}"
        for finding in gated.findings
    ]


def write_markdown(record: dict, gated: GateResult | None, path: Path) -> Path:
    prov = record["provenance"]
    parts = [
        f"Measured on {prov['device']} (torch {prov['torch']}, Triton {prov['triton']}) on "
        f"{prov['timestamp'][:10]} with `{prov['command']}`, git "
        f"{(prov['git']['sha'] or 'none')[:8]}{' (dirty)' if prov['git']['dirty'] else ''}:",
        "",
        _markdown_table(COLUMNS, [row_cells(row) for row in record["rows"]]),
    ]
    reasons = [
        f"- {row['benchmark']} {row['case']} {row['dtype']} {row['mode']} {row['impl']}: {row['reason']}"
        for row in record["rows"]
        if row["reason"]
    ]
    if reasons:
        parts += ["", "Skips and failures:", "", *reasons]
    if gated is not None:
        parts += [
            "",
            f"Against the baseline ({gate_rule(gated)}):",
            "",
            *(f"- {line}" for line in _findings(gated)),
            "",
            _markdown_table(GATE_COLUMNS, gate_cells(gated)),
        ]
    write_text_atomically("\n".join(parts) + "\n", path)
    return path


def build_report(record: dict, out: Path, gated: GateResult | None = None) -> ReportFiles:
    """Writes the plots, ``report.html`` and ``report.md`` into ``out`` (created if needed), with the
    regression gate's verdicts against a baseline when ``gated`` is given."""
    if not record["rows"]:
        raise ReportError("the run has no rows: nothing to report")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = {
        "latency": plot_latency(record, out / "latency.png"),
        "speedup": plot_speedup(record, out / "speedup.png"),
        "roofline": plot_roofline(record, out / "roofline.png"),
    }
    return ReportFiles(
        html=write_html(record, plots, gated, out / "report.html"),
        markdown=write_markdown(record, gated, out / "report.md"),
        plots=plots,
    )
