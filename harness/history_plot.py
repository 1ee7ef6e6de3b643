"""The results history shown: a table of each row's medians over commits, and a PNG plot of them.

``table`` gives per row key its (commit, median, marker) in commit order, the marker non-empty at a
change point's commit. ``plot`` draws one panel per benchmark, one line per row key over the commits
(oldest left; a log y axis when a panel's slowest/fastest point exceeds ``WIDE_RANGE``), each change
point a dashed line labelled with its ratio after/before (rows stepping at one commit share one label).
The history itself (series, commits, change points) is ``history_store.query``'s.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from menagerie.harness.formatting import format_seconds
from menagerie.harness.history_store import ChangePoint, Commit, History, RowKey, Series
from menagerie.harness.results import write_bytes_atomically

MAX_TICK_LABELS = 30
WIDE_RANGE = 3.0  # a panel whose slowest/fastest point exceeds this gets a log y axis


def _marker(change: ChangePoint | None) -> str:
    if change is None:
        return ""
    return f"step ×{change.ratio:.3f} ({'slower' if change.ratio > 1 else 'faster'})"


def table(history: History) -> dict[RowKey, list[tuple[Commit, float, str]]]:
    """Per row key: (commit, median_s, marker), the marker non-empty at a change point's commit. Commits, not
    their labels: two dirty runs of one sha are two commits with one label."""
    lines = {}
    for series in history.series:
        changes = {change.index: change for change in series.change_points}
        lines[series.key] = [
            (point.commit, point.median_s, _marker(changes.get(index))) for index, point in enumerate(series.points)
        ]
    return lines


def _mark_steps(ax, changes: dict[float, list[tuple[ChangePoint, str]]]) -> None:
    """A dashed line at each step; one label per step, so that rows stepping together do not pile up labels."""
    for x, marked in changes.items():
        ratios = sorted(change.ratio for change, _ in marked)
        colour = marked[0][1] if len(marked) == 1 else "0.3"
        text = f"×{ratios[0]:.2f}" if len(marked) == 1 else f"×{ratios[0]:.2f}–{ratios[-1]:.2f}\n{len(marked)} rows"
        ax.axvline(x, color=colour, linestyle="--", linewidth=1, alpha=0.8)
        ax.annotate(
            text,
            xy=(x, 0.98),
            xycoords=("data", "axes fraction"),
            xytext=(3, 0),
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize=7,
            color=colour,
            bbox=dict(facecolor="white", alpha=0.8, edgecolor="none", pad=1),
        )


def plot(history: History, path: Path | str) -> Path:
    """A PNG with one panel per benchmark, one line per row key over the commits, change points dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazily: matplotlib is an optional extra
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    benchmarks: dict[str, list[Series]] = {}
    for series in history.series:
        benchmarks.setdefault(series.key[0], []).append(series)
    position = {commit: index for index, commit in enumerate(history.commits)}
    most_rows = max(map(len, benchmarks.values()), default=1)
    width = min(max(8.0, 4 + 0.25 * len(history.commits)), 20.0)
    height = max(3.6, 1.2 + 0.17 * most_rows)  # room for the legend beside each panel
    figure = Figure(figsize=(width, height * max(len(benchmarks), 1)), layout="constrained")
    axes = figure.subplots(max(len(benchmarks), 1), 1, squeeze=False).ravel()
    if not benchmarks:
        axes[0].text(0.5, 0.5, "no timed row in the store matches", ha="center", va="center")
        axes[0].set_axis_off()
    tick_step = math.ceil(len(history.commits) / MAX_TICK_LABELS) or 1
    seconds = FuncFormatter(lambda value, _: format_seconds(value))
    for ax, (benchmark, panel) in zip(axes, benchmarks.items()):
        changes: dict[float, list[tuple[ChangePoint, str]]] = {}
        # Slowest first, so that the legend lists the lines in the order they lie in.
        for number, series in enumerate(sorted(panel, key=lambda series: -series.points[-1].median_s)):
            colour = f"C{number % 10}"
            ax.plot(
                [position[point.commit] for point in series.points],
                [point.median_s for point in series.points],
                marker="os^vD"[number // 10 % 5],
                markersize=3.5,
                linewidth=1.2,
                color=colour,
                label=" · ".join(series.key[1:]),
            )
            for change in series.change_points:
                changes.setdefault(position[change.commit] - 0.5, []).append((change, colour))
        _mark_steps(ax, changes)
        medians = [point.median_s for series in panel for point in series.points]
        if max(medians) / min(medians) > WIDE_RANGE:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(seconds)
        ticks = list(range(0, len(history.commits), tick_step))
        ax.set_xticks(
            ticks, [history.commits[index].label for index in ticks], rotation=60, fontsize=7, family="monospace"
        )
        ax.set_xlim(-0.5, len(history.commits) - 0.5)
        ax.set_title(benchmark, fontsize=10, loc="left")
        ax.set_ylabel("median time per call")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    figure.suptitle(
        f"history on {history.device} · size {history.size} · timer {history.timer}\n"
        f"{len(history.commits)} commits (oldest left); dashed: change point, after/before",
        fontsize=10,
    )
    image = io.BytesIO()
    FigureCanvasAgg(figure).print_png(image, metadata={"Software": "menagerie history"})
    return write_bytes_atomically(image.getvalue(), Path(path))
