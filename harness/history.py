"""Results history: each benchmark row's median over commits, and the commits where it stepped.

Store
    A store is one or more folders of run records (``menagerie run`` JSON files, found
    recursively: ``results/baselines/``, ``results/history/``, any folder). Each folder
    has a plain SQLite index, ``<folder>/.menagerie-index.sqlite`` (or one file per folder
    under ``cache_dir`` when that is given, e.g. for a read-only folder). The index caches
    per file its modification time and size, the run's provenance (git sha and dirty flag,
    timestamp, device) and config (size preset, timer), and per timed row its median and
    replicate medians. A file is read again only when its mtime or size changed; files that
    are gone are dropped. The JSON files are the truth: an index can be deleted at any time
    and is rebuilt (also when it is corrupt or of another index version).

Reading run records
    schema_version 1 and 2 are read with ``json``, not validated (the schema is evolving).
    A row enters the history when its status is ``ok`` and it has stats. Its replicate
    medians are ``replicate_medians_s`` (v2, one per process-level replicate) or
    ``[stats.median_s]`` (v1); its median is their geometric mean. A JSON file that is not
    a readable run record (another schema version, a study's output, a malformed record) is
    skipped with a warning in ``History.warnings``, never an exception.

Series
    ``query`` selects runs of one device, size preset and timer (runs of other devices are
    never mixed in; another timer measures other things). Each left unset is taken from the
    most recent run (by provenance timestamp) that matches those that are set. Benchmarks
    are chosen by glob patterns on the benchmark name or its family (as
    ``menagerie.harness.registry.select`` does, but over the names the store holds); case, impl,
    dtype and mode are optional glob filters. One series per row key
    ``(benchmark, case, impl, dtype, mode)``.

    Commits: the runs of one clean git sha are merged into one commit, whose timestamp is
    its earliest run's and whose point pools the replicate medians of all its runs (median:
    their geometric mean). Merging keeps one x position per commit and stops re-runs of one
    commit from posing as steps. A dirty or git-less run is a commit of its own (its sha
    does not name its code); its label ends in ``*`` (dirty) or is ``no-git``. Commits are
    ordered by timestamp, i.e. by when they were first measured, not by git's commit date.
    A row's params are not compared: a case whose shapes changed under the same name reads
    as a step.

Change points (``detect_steps``)
    On the log of a series' medians: ruptures' PELT search (``KernelCPD``, linear kernel,
    i.e. the least-squares cost of a piecewise-constant fit) on the series scaled by a robust
    noise estimate (1.4826 * median |first difference| / sqrt 2), with a BIC penalty of
    2 log n per step, proposes steps with at least ``min_segment`` (3) points on each
    side, so that one outlier run cannot form a segment whose median moves. A proposed step
    is kept only when it is both
      - statistically clear: a pooled two-sample t-test of the log medians of the two
        segments it separates, Bonferroni-adjusted for the n - 2*min_segment + 1 places a
        step could be put, gives p < ``alpha`` (0.01); and
      - practically large: the ratio of the segments' medians is at least
        ``1 + threshold`` (5%) or at most ``1 / (1 + threshold)``.
    Failing steps are merged away one at a time, weakest (largest p) first, re-testing the
    merged segments. A change point reports the first commit after the step, the ratio
    after/before of the segments' medians (> 1 is slower) and both segment sizes.
    A series shorter than 2 * min_segment has no change points.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import io
import json
import math
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import ruptures
from scipy import stats

from menagerie.harness.formatting import format_seconds
from menagerie.harness.results import row_key, write_bytes_atomically

RowKey = tuple[str, str, str, str, str]

READ_SCHEMA_VERSIONS = (1, 2)
INDEX_NAME = ".menagerie-index.sqlite"
INDEX_VERSION = 2  # bump when the tables change: an index of another version is rebuilt
DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.01
DEFAULT_MIN_SEGMENT = 3
NOISE_FLOOR = 1e-3  # log units; keeps PELT's scaling finite on a series without noise
MAX_TICK_LABELS = 30
WIDE_RANGE = 3.0  # a panel whose slowest/fastest point exceeds this gets a log y axis

_TABLES = f"""
DROP TABLE IF EXISTS rows;
DROP TABLE IF EXISTS files;
CREATE TABLE files (
    path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, bytes INTEGER NOT NULL,
    warning TEXT,  -- set when the file is not a run record; the run columns are NULL then
    sha TEXT, dirty INTEGER, timestamp TEXT, time REAL, device TEXT, size TEXT, timer TEXT,
    message TEXT, versions TEXT);
CREATE TABLE rows (
    path TEXT NOT NULL REFERENCES files(path) ON DELETE CASCADE,
    benchmark TEXT NOT NULL, "case" TEXT NOT NULL, impl TEXT NOT NULL, dtype TEXT NOT NULL, mode TEXT NOT NULL,
    median_s REAL NOT NULL, replicate_medians_s TEXT NOT NULL);  -- comma-separated floats (faster to read than JSON)
CREATE INDEX rows_by_path ON rows(path);
PRAGMA user_version = {INDEX_VERSION};
"""


class HistoryError(ValueError):
    """A store folder that does not exist, or a benchmark pattern that matches nothing."""


class NotARun(ValueError):
    """A JSON file that is not a run record this module reads."""


@dataclass(frozen=True)
class Run:
    path: str
    sha: str | None
    dirty: bool | None
    timestamp: str
    time: float  # POSIX seconds of ``timestamp`` (naive timestamps are taken as UTC)
    device: str
    size: str
    timer: str | None
    message: str | None  # the commit's subject line, when the record carries it
    versions: str  # "Python … · torch … · Triton … · CUDA …"


@dataclass(frozen=True)
class Commit:
    sha: str | None
    dirty: bool | None
    timestamp: str  # of its earliest run
    time: float
    runs: tuple[str, ...]  # paths of its run files, oldest first

    @property
    def label(self) -> str:
        if not self.sha:
            return "no-git"
        return self.sha[:8] + ("" if self.dirty is False else "*")


@dataclass(frozen=True)
class Point:
    commit: Commit
    median_s: float  # geometric mean of ``replicate_medians_s``
    replicate_medians_s: tuple[float, ...]


@dataclass(frozen=True)
class Step:
    index: int  # position in the series of the first point after the step
    ratio: float  # median of the segment after / median of the segment before; > 1 is slower
    before: int  # points in the segment before the step
    after: int  # points in the segment after it
    p_value: float  # Bonferroni-adjusted, of the t-test between the two segments


@dataclass(frozen=True)
class ChangePoint(Step):
    commit: Commit  # the first commit after the step


@dataclass(frozen=True)
class Series:
    key: RowKey
    points: list[Point]  # in commit order
    change_points: list[ChangePoint]


@dataclass(frozen=True)
class History:
    device: str | None  # None when the store holds no run that matches
    size: str | None
    timer: str | None
    commits: list[Commit]  # every commit with a point in some series, in order: the x axis
    series: list[Series]  # sorted by row key
    warnings: list[str]


# ---- reading run files ----

def _epoch(timestamp: str) -> float:
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))  # Python 3.10 does not read "Z"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _geometric_mean(values: Sequence[float]) -> float:
    if len(values) == 1:
        return float(values[0])  # exactly the one median, not exp(log(x))
    return math.exp(sum(map(math.log, values)) / len(values))


def _timed_row(row: dict) -> tuple[RowKey, float, list[float]] | None:
    if row["status"] != "ok" or not row["stats"]:
        return None
    replicates = [float(value) for value in row.get("replicate_medians_s") or [row["stats"]["median_s"]]]
    if not all(math.isfinite(value) and value > 0 for value in replicates):
        raise ValueError(f"row {row_key(row)} has a median that is not a positive number: {replicates}")
    return tuple(str(part) for part in row_key(row)), _geometric_mean(replicates), replicates


def _versions(provenance: dict) -> str:
    stack = [("Python", "python"), ("torch", "torch"), ("Triton", "triton"), ("CUDA", "cuda"), ("driver", "driver")]
    return " · ".join(f"{name} {provenance[field]}" for name, field in stack if provenance.get(field))


def read_run_file(path: Path) -> tuple[dict, list[tuple[RowKey, float, list[float]]]]:
    """The run's provenance fields and its timed rows; raises NotARun for any other JSON file."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise NotARun(f"not readable as JSON ({error})") from None
    if not isinstance(record, dict) or "provenance" not in record or "rows" not in record:
        raise NotARun("not a menagerie run record")
    if record.get("schema_version") not in READ_SCHEMA_VERSIONS:
        raise NotARun(f"schema_version {record.get('schema_version')!r}; this menagerie reads "
                      f"{', '.join(map(str, READ_SCHEMA_VERSIONS))}")
    try:
        provenance, config = record["provenance"], record["config"]
        run = dict(sha=provenance["git"]["sha"], dirty=provenance["git"]["dirty"],
                   timestamp=provenance["timestamp"], time=_epoch(provenance["timestamp"]),
                   device=str(provenance["device"]), size=str(config["size"]), timer=config.get("timer"),
                   message=provenance["git"].get("message"), versions=_versions(provenance))
        rows = [timed for timed in map(_timed_row, record["rows"]) if timed]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise NotARun(f"malformed run record ({type(error).__name__}: {error})") from None
    return run, rows


# ---- the store ----

def _open_index(path: Path) -> tuple[sqlite3.Connection, str | None]:
    """The index at ``path`` (rebuilt when corrupt or stale), or an in-memory one, with a warning, when unwritable."""
    problem = notice = None
    for attempt in range(2):
        db = None
        try:
            db = sqlite3.connect(path, timeout=30)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if version != INDEX_VERSION or not {"files", "rows"} <= tables:
                db.executescript(_TABLES)
                if tables and notice is None:  # not a new file: an index of another layout
                    notice = (f"rebuilt the index {path} from the run files: it had another layout "
                              f"(version {version}, tables {', '.join(sorted(tables))})")
            return db, notice
        except sqlite3.DatabaseError as error:
            problem = error
            if db is not None:
                db.close()
            if attempt or not path.is_file():
                break
            try:
                path.unlink()  # a corrupt index only cached the JSON files: rebuild it
            except OSError:
                break
            notice = f"rebuilt the index {path} from the run files: it was corrupt ({problem})"
    db = sqlite3.connect(":memory:")
    db.executescript(_TABLES)
    return db, f"cannot use the index {path} ({problem}); every run file is read this time"


class Store:
    """Run records in ``folders`` (recursive), indexed in SQLite; see the module docstring."""

    def __init__(self, folders: Sequence[Path | str], cache_dir: Path | str | None = None):
        self.folders = [Path(folder).resolve() for folder in folders]
        missing = [str(folder) for folder in self.folders if not folder.is_dir()]
        if missing:
            raise HistoryError(f"store folder(s) not found: {', '.join(missing)}")
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
        self._indexes: list[tuple[Path, sqlite3.Connection]] = []
        self._open_warnings: list[str] = []
        for folder in self.folders:
            db, warning = _open_index(self.index_path(folder, cache_dir))
            db.execute("PRAGMA foreign_keys = ON")
            self._indexes.append((folder, db))
            self._open_warnings += [warning] if warning else []

    @staticmethod
    def index_path(folder: Path, cache_dir: Path | str | None = None) -> Path:
        if cache_dir is None:
            return folder / INDEX_NAME
        digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]
        return Path(cache_dir) / f"{folder.name}-{digest}.sqlite"

    def close(self) -> None:
        for _, db in self._indexes:
            db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def sync(self) -> list[str]:
        """Brings every index up to date with its folder; returns the warnings (skipped files, index trouble)."""
        warnings = list(self._open_warnings)
        for folder, db in self._indexes:
            on_disk = {}
            for path in sorted(folder.rglob("*.json")):
                if path.is_file():
                    stat = path.stat()
                    on_disk[path.relative_to(folder).as_posix()] = (stat.st_mtime_ns, stat.st_size)
            with db:  # one transaction per folder
                known = {path: (mtime, size)
                         for path, mtime, size in db.execute("SELECT path, mtime_ns, bytes FROM files")}
                for path in known.keys() - on_disk.keys():
                    db.execute("DELETE FROM files WHERE path = ?", (path,))
                for path, stamp in on_disk.items():
                    if known.get(path) != stamp:
                        self._index_file(db, folder, path, stamp)
            warnings += [f"skipped {folder / path}: {warning}"
                         for path, warning in db.execute("SELECT path, warning FROM files WHERE warning IS NOT NULL"
                                                         " ORDER BY path")]
        return warnings

    @staticmethod
    def _index_file(db: sqlite3.Connection, folder: Path, path: str, stamp: tuple[int, int]) -> None:
        db.execute("DELETE FROM files WHERE path = ?", (path,))
        try:
            run, rows = read_run_file(folder / path)
        except NotARun as error:
            db.execute("INSERT INTO files (path, mtime_ns, bytes, warning) VALUES (?, ?, ?, ?)",
                       (path, *stamp, str(error)))
            return
        db.execute("INSERT INTO files VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (path, *stamp, run["sha"], run["dirty"], run["timestamp"], run["time"], run["device"], run["size"],
                    run["timer"], run["message"], run["versions"]))
        db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       [(path, *key, median, ",".join(map(repr, replicates))) for key, median, replicates in rows])

    def runs(self) -> list[Run]:
        """Every indexed run record (call ``sync`` first), oldest first."""
        runs = []
        for folder, db in self._indexes:
            for path, sha, dirty, *rest in db.execute(
                    "SELECT path, sha, dirty, timestamp, time, device, size, timer, message, versions FROM files "
                    "WHERE warning IS NULL"):
                runs.append(Run(str(folder / path), sha, None if dirty is None else bool(dirty), *rest))
        return sorted(runs, key=lambda run: (run.time, run.path))

    def rows(self, device: str, size: str, timer: str | None) -> list[tuple[str, RowKey, float, list[float]]]:
        """(run path, row key, median, replicate medians) of each timed row of the runs of this device, size, timer."""
        found = []
        for folder, db in self._indexes:
            full = functools.lru_cache(maxsize=None)(lambda path: str(folder / path))  # once per run file, not per row
            for path, *key, median, replicates in db.execute(
                    'SELECT r.path, benchmark, "case", impl, dtype, mode, median_s, replicate_medians_s '
                    "FROM rows r JOIN files f ON f.path = r.path WHERE device = ? AND size = ? AND timer IS ?",
                    (device, size, timer)):
                found.append((full(path), tuple(key), median, [float(value) for value in replicates.split(",")]))
        return found


# ---- change points ----

def _robust_noise(values: np.ndarray) -> float:
    """Standard deviation of the noise, from first differences: a few steps barely move their median."""
    return 1.4826 * float(np.median(np.abs(np.diff(values)))) / math.sqrt(2)


def _t_test(before: np.ndarray, after: np.ndarray) -> float:
    """Two-sided p-value of the pooled two-sample t-test (equal noise on both sides, as on one machine)."""
    freedom = len(before) + len(after) - 2
    pooled = (((before - before.mean()) ** 2).sum() + ((after - after.mean()) ** 2).sum()) / freedom
    difference = after.mean() - before.mean()
    spread = math.sqrt(pooled * (1 / len(before) + 1 / len(after)))
    if spread == 0:
        return 0.0 if difference else 1.0
    return float(2 * stats.t.sf(abs(difference) / spread, freedom))


def detect_steps(medians_s: Sequence[float], threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA,
                 min_segment: int = DEFAULT_MIN_SEGMENT) -> list[Step]:
    """Steps in a series of positive medians (in order), as the module docstring describes."""
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if min_segment < 2:
        raise ValueError(f"min_segment must be >= 2 (a t-test needs two points a side), got {min_segment}")
    values = np.log(np.asarray(medians_s, dtype=float))
    count = len(values)
    if count < 2 * min_segment:
        return []
    scaled = values / max(_robust_noise(values), NOISE_FLOOR)
    # The linear kernel's cost is the least-squares cost; KernelCPD runs PELT on it in C (Pelt(model="l2") is Python).
    search = ruptures.KernelCPD(kernel="linear", min_size=min_segment, jump=1).fit(scaled)
    ends = search.predict(pen=2 * math.log(count))[:-1]
    places = count - 2 * min_segment + 1  # where a step could have been put: the Bonferroni factor
    while ends:
        edges = [0, *ends, count]
        segments = [values[start:end] for start, end in zip(edges, edges[1:])]
        steps = [Step(index=end, ratio=math.exp(np.median(after) - np.median(before)), before=len(before),
                      after=len(after), p_value=min(1.0, places * _t_test(before, after)))
                 for end, before, after in zip(ends, segments, segments[1:])]
        failing = [index for index, step in enumerate(steps)
                   if step.p_value >= alpha or abs(math.log(step.ratio)) < math.log1p(threshold)]
        if not failing:
            return steps
        ends.pop(max(failing, key=lambda index: steps[index].p_value))
    return []


# ---- queries ----

def _commits(runs: list[Run]) -> dict[str, Commit]:
    """The commit of each run path; runs of one clean sha share one."""
    groups: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda run: (run.time, run.path)):
        groups.setdefault(run.sha if run.sha and run.dirty is False else run.path, []).append(run)
    commit_of = {}
    for group in groups.values():
        first = group[0]
        commit = Commit(first.sha, first.dirty, first.timestamp, first.time, tuple(run.path for run in group))
        commit_of.update({run.path: commit for run in group})
    return commit_of


def _chosen_benchmarks(patterns: Sequence[str], names: set[str], where: str) -> set[str]:
    if not patterns:
        return names
    chosen = set()
    for pattern in patterns:
        hits = {name for name in names
                if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(name.split(".")[0], pattern)}
        if not hits:
            raise HistoryError(f"no benchmark matches {pattern!r} in {where}; "
                               f"there: {', '.join(sorted(names)) or 'none'}")
        chosen |= hits
    return chosen


def query(store: Store, patterns: Sequence[str] = (), *, device: str | None = None, size: str | None = None,
          timer: str | None = None, case: str | None = None, impl: str | None = None, dtype: str | None = None,
          mode: str | None = None, threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA,
          min_segment: int = DEFAULT_MIN_SEGMENT) -> History:
    """The series of every matching row key, with change points; syncs the store first. See the module docstring."""
    warnings = store.sync()
    wanted = dict(device=device, size=size, timer=timer)
    matching = [run for run in store.runs()
                if all(value is None or getattr(run, field) == value for field, value in wanted.items())]
    if not matching:
        return History(device, size, timer, [], [], warnings)
    latest = matching[-1]
    device, size, timer = device or latest.device, size or latest.size, timer or latest.timer
    commit_of = _commits([run for run in matching if (run.device, run.size, run.timer) == (device, size, timer)])
    rows = store.rows(device, size, timer)
    benchmarks = _chosen_benchmarks(patterns, {key[0] for _, key, _, _ in rows},
                                    f"the runs of {device} (size {size}, timer {timer})")
    filters = [(position, pattern) for position, pattern in enumerate((case, impl, dtype, mode), start=1) if pattern]
    replicates_of: dict[RowKey, dict[str, list[float]]] = {}  # per row key, per run path
    for path, key, _, replicates in rows:
        if key[0] in benchmarks and all(fnmatch.fnmatch(key[position], pattern) for position, pattern in filters):
            replicates_of.setdefault(key, {})[path] = replicates
    commits = sorted(set(commit_of.values()), key=lambda commit: (commit.time, commit.runs))
    series: list[Series] = []
    for key, by_run in sorted(replicates_of.items()):
        pooled = [(commit, [value for run in commit.runs for value in by_run.get(run, [])]) for commit in commits]
        points = [Point(commit, _geometric_mean(values), tuple(values)) for commit, values in pooled if values]
        steps = detect_steps([point.median_s for point in points], threshold, alpha, min_segment)
        changes = [ChangePoint(**vars(step), commit=points[step.index].commit) for step in steps]
        series.append(Series(key, points, changes))
    plotted = {point.commit for line in series for point in line.points}  # no empty x positions
    return History(device, size, timer, [commit for commit in commits if commit in plotted], series, warnings)


# ---- output ----

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
        lines[series.key] = [(point.commit, point.median_s, _marker(changes.get(index)))
                             for index, point in enumerate(series.points)]
    return lines


def _mark_steps(ax, changes: dict[float, list[tuple[ChangePoint, str]]]) -> None:
    """A dashed line at each step; one label per step, so that rows stepping together do not pile up labels."""
    for x, marked in changes.items():
        ratios = sorted(change.ratio for change, _ in marked)
        colour = marked[0][1] if len(marked) == 1 else "0.3"
        text = f"×{ratios[0]:.2f}" if len(marked) == 1 else f"×{ratios[0]:.2f}–{ratios[-1]:.2f}\n{len(marked)} rows"
        ax.axvline(x, color=colour, linestyle="--", linewidth=1, alpha=0.8)
        ax.annotate(text, xy=(x, 0.98), xycoords=("data", "axes fraction"), xytext=(3, 0), textcoords="offset points",
                    ha="left", va="top", fontsize=7, color=colour,
                    bbox=dict(facecolor="white", alpha=0.8, edgecolor="none", pad=1))


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
            ax.plot([position[point.commit] for point in series.points], [point.median_s for point in series.points],
                    marker="os^vD"[number // 10 % 5], markersize=3.5, linewidth=1.2, color=colour,
                    label=" · ".join(series.key[1:]))
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
        ax.set_xticks(ticks, [history.commits[index].label for index in ticks], rotation=60, fontsize=7,
                      family="monospace")
        ax.set_xlim(-0.5, len(history.commits) - 0.5)
        ax.set_title(benchmark, fontsize=10, loc="left")
        ax.set_ylabel("median time per call")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    figure.suptitle(f"history on {history.device} · size {history.size} · timer {history.timer}\n"
                    f"{len(history.commits)} commits (oldest left); dashed: change point, after/before", fontsize=10)
    image = io.BytesIO()
    FigureCanvasAgg(figure).print_png(image, metadata={"Software": "menagerie history"})
    return write_bytes_atomically(image.getvalue(), Path(path))
