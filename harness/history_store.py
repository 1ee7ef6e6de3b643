"""Results history: each benchmark row's median over commits, read from an indexed store of run records.

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
    The schema versions ``results.READ_SCHEMA_VERSIONS`` (1 and 2) are read with ``json``, not
    validated (the schema is evolving). A row enters the history when its status is ``ok`` or ``noisy`` and
    it has stats. Its replicate medians are ``replicate_medians_s`` (v2, one per process-level
    replicate) or ``[stats.median_s]`` (v1); its median is their geometric mean. A JSON file that
    is not a readable run record (another schema version, a study's output, a malformed record) is
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

    Change points: each series' steps, found by ``change_points.detect_steps`` on its medians
    (``threshold``, ``alpha`` and ``min_segment`` as there), each at the first commit after it.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from menagerie.harness.change_points import DEFAULT_ALPHA, DEFAULT_MIN_SEGMENT, DEFAULT_THRESHOLD, Step, detect_steps
from menagerie.harness.results import MEASURED_STATUSES, READ_SCHEMA_VERSIONS, row_key

RowKey = tuple[str, str, str, str, str]

INDEX_NAME = ".menagerie-index.sqlite"
INDEX_VERSION = 2  # bump when the tables change: an index of another version is rebuilt

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
    if row["status"] not in MEASURED_STATUSES or not row["stats"]:
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
        raise NotARun(
            f"schema_version {record.get('schema_version')!r}; this menagerie reads "
            f"{', '.join(map(str, READ_SCHEMA_VERSIONS))}"
        )
    try:
        provenance, config = record["provenance"], record["config"]
        run = dict(
            sha=provenance["git"]["sha"],
            dirty=provenance["git"]["dirty"],
            timestamp=provenance["timestamp"],
            time=_epoch(provenance["timestamp"]),
            device=str(provenance["device"]),
            size=str(config["size"]),
            timer=config.get("timer"),
            message=provenance["git"].get("message"),
            versions=_versions(provenance),
        )
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
                    notice = (
                        f"rebuilt the index {path} from the run files: it had another layout "
                        f"(version {version}, tables {', '.join(sorted(tables))})"
                    )
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
                known = {
                    path: (mtime, size) for path, mtime, size in db.execute("SELECT path, mtime_ns, bytes FROM files")
                }
                for path in known.keys() - on_disk.keys():
                    db.execute("DELETE FROM files WHERE path = ?", (path,))
                for path, stamp in on_disk.items():
                    if known.get(path) != stamp:
                        self._index_file(db, folder, path, stamp)
            warnings += [
                f"skipped {folder / path}: {warning}"
                for path, warning in db.execute(
                    "SELECT path, warning FROM files WHERE warning IS NOT NULL ORDER BY path"
                )
            ]
        return warnings

    @staticmethod
    def _index_file(db: sqlite3.Connection, folder: Path, path: str, stamp: tuple[int, int]) -> None:
        db.execute("DELETE FROM files WHERE path = ?", (path,))
        try:
            run, rows = read_run_file(folder / path)
        except NotARun as error:
            db.execute(
                "INSERT INTO files (path, mtime_ns, bytes, warning) VALUES (?, ?, ?, ?)", (path, *stamp, str(error))
            )
            return
        db.execute(
            "INSERT INTO files VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                path,
                *stamp,
                run["sha"],
                run["dirty"],
                run["timestamp"],
                run["time"],
                run["device"],
                run["size"],
                run["timer"],
                run["message"],
                run["versions"],
            ),
        )
        db.executemany(
            "INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(path, *key, median, ",".join(map(repr, replicates))) for key, median, replicates in rows],
        )

    def runs(self) -> list[Run]:
        """Every indexed run record (call ``sync`` first), oldest first."""
        runs = []
        for folder, db in self._indexes:
            for path, sha, dirty, *rest in db.execute(
                "SELECT path, sha, dirty, timestamp, time, device, size, timer, message, versions FROM files "
                "WHERE warning IS NULL"
            ):
                runs.append(Run(str(folder / path), sha, None if dirty is None else bool(dirty), *rest))
        return sorted(runs, key=lambda run: (run.time, run.path))

    def rows(self, device: str, size: str, timer: str | None) -> list[tuple[str, RowKey, float, list[float]]]:
        """(run path, row key, median, replicate medians) of each timed row of the runs of this device, size, timer."""
        found = []
        for folder, db in self._indexes:
            full = functools.cache(lambda path, folder=folder: str(folder / path))  # once per run file, not per row
            for path, *key, median, replicates in db.execute(
                'SELECT r.path, benchmark, "case", impl, dtype, mode, median_s, replicate_medians_s '
                "FROM rows r JOIN files f ON f.path = r.path WHERE device = ? AND size = ? AND timer IS ?",
                (device, size, timer),
            ):
                found.append((full(path), tuple(key), median, [float(value) for value in replicates.split(",")]))
        return found


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
        hits = {
            name for name in names if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(name.split(".")[0], pattern)
        }
        if not hits:
            raise HistoryError(
                f"no benchmark matches {pattern!r} in {where}; there: {', '.join(sorted(names)) or 'none'}"
            )
        chosen |= hits
    return chosen


def query(
    store: Store,
    patterns: Sequence[str] = (),
    *,
    device: str | None = None,
    size: str | None = None,
    timer: str | None = None,
    case: str | None = None,
    impl: str | None = None,
    dtype: str | None = None,
    mode: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    min_segment: int = DEFAULT_MIN_SEGMENT,
) -> History:
    """The series of every matching row key, with change points; syncs the store first. See the module docstring."""
    warnings = store.sync()
    wanted = dict(device=device, size=size, timer=timer)
    matching = [
        run
        for run in store.runs()
        if all(value is None or getattr(run, field) == value for field, value in wanted.items())
    ]
    if not matching:
        return History(device, size, timer, [], [], warnings)
    latest = matching[-1]
    device, size, timer = device or latest.device, size or latest.size, timer or latest.timer
    commit_of = _commits([run for run in matching if (run.device, run.size, run.timer) == (device, size, timer)])
    rows = store.rows(device, size, timer)
    benchmarks = _chosen_benchmarks(
        patterns, {key[0] for _, key, _, _ in rows}, f"the runs of {device} (size {size}, timer {timer})"
    )
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
