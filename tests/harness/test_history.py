"""The results history: ``history_store`` (the SQLite-indexed store of run records, series per row key, their change
points), ``history_plot`` (table and plot) and ``menagerie history``."""

import json
import math
import os
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from PIL import Image

from menagerie.harness import change_points, history_plot, history_store

H200, A100 = "NVIDIA H200", "NVIDIA A100-SXM4-80GB"
START = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
SWA = ("attention.sliding_window", "b4h8s1024", "triton", "bfloat16", "fwd")
SWA_REF = ("attention.sliding_window", "b4h8s1024", "reference", "bfloat16", "fwd")
SCAN = ("ssm.selective_scan", "b2d512l256", "triton", "float32", "bwd")


def sha_of(commit: int) -> str:
    return f"{commit:02d}" + "ab" * 19


def run_record(
    medians: dict, commit: int, *, device=H200, size="small", timer="events", version=2, dirty=False, hours=None
) -> dict:
    """A run record whose rows have these medians (a float, or a list of replicate medians in v2)."""
    rows = []
    for (benchmark, case, impl, dtype, mode), value in medians.items():
        replicates = value if isinstance(value, list) else [value]
        row = {
            "benchmark": benchmark,
            "case": case,
            "impl": impl,
            "dtype": dtype,
            "mode": mode,
            "status": "ok",
            "stats": {"median_s": float(np.median(replicates))},
        }
        if version == 2:
            row["replicate_medians_s"] = replicates
        rows.append(row)
    when = START + timedelta(hours=commit if hours is None else hours)
    return {
        "schema_version": version,
        "provenance": {"device": device, "git": {"sha": sha_of(commit), "dirty": dirty}, "timestamp": when.isoformat()},
        "config": {"size": size, "timer": timer, "repeat": 3},
        "rows": rows,
    }


def write(folder, name: str, record) -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return str(path)


def noisy_series(
    folder,
    commits: int,
    seed: int,
    step_at: int | None = None,
    step: float = 1.10,
    noise: float = 0.02,
    keys=(SWA, SWA_REF),
) -> None:
    """One run per commit, each row ~1 ms (×``step`` from ``step_at`` on) with log-normal noise."""
    rng = np.random.default_rng(seed)
    for commit in range(commits):
        factor = step if step_at is not None and commit >= step_at else 1.0
        medians = {key: 1e-3 * (1 + index) * factor * math.exp(rng.normal(0, noise)) for index, key in enumerate(keys)}
        write(folder, f"run-{commit:03d}.json", run_record(medians, commit))


def query(folder, *patterns, **options) -> history_store.History:
    with history_store.Store([folder]) as store:
        return history_store.query(store, patterns, **options)


def by_key(result: history_store.History) -> dict:
    return {series.key: series for series in result.series}


# ---- the store and its queries ----


def test_series_is_ordered_by_timestamp_not_by_file_name(tmp_path):
    # File names in the reverse order of the timestamps, one in a subfolder (the store is recursive).
    for name, commit in (("a.json", 3), ("b.json", 2), ("sub/c.json", 1), ("d.json", 0)):
        write(tmp_path, name, run_record({SWA: 1e-3 * (1 + commit)}, commit))
    result = query(tmp_path)
    (series,) = result.series
    assert series.key == SWA
    assert [point.median_s for point in series.points] == pytest.approx([1e-3, 2e-3, 3e-3, 4e-3])
    assert [point.commit.sha for point in series.points] == [sha_of(commit) for commit in range(4)]
    assert [commit.label for commit in result.commits] == [sha_of(commit)[:8] for commit in range(4)]
    assert (result.device, result.size, result.timer, result.warnings) == (H200, "small", "events", [])


def test_devices_are_never_mixed_and_the_default_is_the_latest_runs(tmp_path):
    for commit in range(3):
        write(tmp_path, f"h200-{commit}.json", run_record({SWA: 1e-3}, commit, device=H200))
    write(tmp_path, "a100.json", run_record({SWA: 5e-3}, 9, device=A100))
    latest = query(tmp_path)
    assert latest.device == A100
    assert [point.median_s for point in latest.series[0].points] == [5e-3]
    h200 = query(tmp_path, device=H200)
    assert h200.device == H200 and len(h200.commits) == 3
    assert all(point.median_s == 1e-3 for point in h200.series[0].points)
    nothing = query(tmp_path, device="Intel Arc")
    assert (nothing.series, nothing.commits, nothing.device) == ([], [], "Intel Arc")


def test_size_and_timer_select_runs_and_default_to_the_latest_run(tmp_path):
    write(tmp_path, "small.json", run_record({SWA: 1e-3}, 0, size="small"))
    write(tmp_path, "full.json", run_record({SWA: 9e-3}, 1, size="full"))
    write(tmp_path, "graph.json", run_record({SWA: 8e-3}, 2, size="full", timer="graph"))
    latest = query(tmp_path)
    assert (latest.size, latest.timer, latest.series[0].points[0].median_s) == ("full", "graph", 8e-3)
    assert query(tmp_path, timer="events").series[0].points[0].median_s == 9e-3
    assert query(tmp_path, size="small").series[0].points[0].median_s == 1e-3


def test_patterns_and_filters(tmp_path):
    dtypes = {key[:3] + ("float16",) + key[4:]: 2e-3 for key in (SWA, SWA_REF)}
    write(tmp_path, "run.json", run_record({SWA: 1e-3, SWA_REF: 3e-3, SCAN: 4e-3, **dtypes}, 0))
    assert {s.key[0] for s in query(tmp_path, "attention").series} == {"attention.sliding_window"}  # a family
    assert {s.key[0] for s in query(tmp_path, "ssm.*").series} == {"ssm.selective_scan"}  # a glob on the name
    assert len(query(tmp_path).series) == 5
    assert [s.key for s in query(tmp_path, "attention", impl="triton", dtype="bfloat16").series] == [SWA]
    assert [s.key for s in query(tmp_path, mode="bwd").series] == [SCAN]
    write(tmp_path, "scan-only.json", run_record({SCAN: 4e-3}, 1))
    assert len(query(tmp_path, "attention").commits) == 1  # no commit without a point
    assert [s.key for s in query(tmp_path, case="b4h8*", impl="ref*", dtype="bfloat16").series] == [SWA_REF]
    with pytest.raises(
        history_store.HistoryError, match=r"'sae\*'.*there: attention.sliding_window, ssm.selective_scan"
    ):
        query(tmp_path, "attention", "sae*")


def test_schema_version_1_files_are_read_beside_version_2(tmp_path):
    write(tmp_path, "v1.json", run_record({SWA: 1e-3}, 0, version=1))
    write(tmp_path, "v2.json", run_record({SWA: [2e-3, 8e-3]}, 1, version=2))
    (series,) = query(tmp_path).series
    first, second = series.points
    assert (first.median_s, first.replicate_medians_s) == (1e-3, (1e-3,))  # v1: stats.median_s
    assert second.median_s == pytest.approx(4e-3)  # v2: the geometric mean of the replicate medians
    assert second.replicate_medians_s == (2e-3, 8e-3)


def test_runs_of_one_clean_commit_merge_and_dirty_runs_stand_alone(tmp_path):
    write(tmp_path, "first.json", run_record({SWA: [1e-3]}, 0))
    write(tmp_path, "again.json", run_record({SWA: [4e-3]}, 0, hours=5))  # the same sha, later
    write(tmp_path, "dirty-a.json", run_record({SWA: 2e-3}, 1, dirty=True, hours=1))
    write(tmp_path, "dirty-b.json", run_record({SWA: 3e-3}, 1, dirty=True, hours=2))
    result = query(tmp_path)
    assert [commit.label for commit in result.commits] == [sha_of(0)[:8], sha_of(1)[:8] + "*", sha_of(1)[:8] + "*"]
    assert len(result.commits[0].runs) == 2 and result.commits[0].timestamp == START.isoformat()
    merged = result.series[0].points[0]
    assert merged.replicate_medians_s == (1e-3, 4e-3) and merged.median_s == pytest.approx(2e-3)


def test_rows_not_timed_are_left_out(tmp_path):
    record = run_record({SWA: 1e-3, SWA_REF: 2e-3, SCAN: 3e-3}, 0)
    record["rows"][1]["status"] = "accuracy_failed"
    record["rows"][2].update(status="skipped", stats=None)
    write(tmp_path, "run.json", record)
    assert [series.key for series in query(tmp_path).series] == [SWA]


def test_files_that_are_not_run_records_are_skipped_with_a_warning(tmp_path):
    write(tmp_path, "good.json", run_record({SWA: 1e-3}, 0))
    (tmp_path / "broken.json").write_text('{"schema_version": 2, "rows": [')
    write(tmp_path, "list.json", [1, 2, 3])
    write(tmp_path, "study.json", {"study": "sinks", "points": []})
    write(tmp_path, "future.json", {**run_record({SWA: 1e-3}, 1), "schema_version": 3})
    malformed = run_record({SWA: 1e-3}, 2)
    del malformed["config"]
    write(tmp_path, "malformed.json", malformed)
    bad_time = run_record({SWA: 1e-3}, 3)
    bad_time["provenance"]["timestamp"] = "yesterday"
    write(tmp_path, "bad-time.json", bad_time)
    result = query(tmp_path)
    assert len(result.commits) == 1 and result.series[0].points[0].median_s == 1e-3
    warnings = "\n".join(result.warnings)
    assert len(result.warnings) == 6
    for name, reason in (
        ("broken.json", "not readable as JSON"),
        ("list.json", "not a menagerie run record"),
        ("study.json", "not a menagerie run record"),
        ("future.json", "schema_version 3"),
        ("malformed.json", "malformed run record"),
        ("bad-time.json", "malformed run record"),
    ):
        assert f"{tmp_path / name}: {reason}" in warnings


def test_missing_store_folder_is_a_clear_error(tmp_path):
    with pytest.raises(history_store.HistoryError, match="not found: .*nowhere"):
        history_store.Store([tmp_path / "nowhere"])


# ---- the SQLite index ----


@pytest.fixture
def reads(monkeypatch):
    """The paths of the run files the store reads (parses), in order."""
    seen = []
    real = history_store.read_run_file

    def counting(path):
        seen.append(path.name)
        return real(path)

    monkeypatch.setattr(history_store, "read_run_file", counting)
    return seen


def test_index_is_reused_and_refreshed_when_files_change(tmp_path, reads):
    for commit in range(3):
        write(tmp_path, f"run-{commit}.json", run_record({SWA: 1e-3 * (1 + commit)}, commit))
    write(tmp_path, "notes.json", {"not": "a run"})
    assert len(query(tmp_path).commits) == 3
    assert sorted(reads) == ["notes.json", "run-0.json", "run-1.json", "run-2.json"]
    assert (tmp_path / history_store.INDEX_NAME).is_file()

    reads.clear()
    again = query(tmp_path)  # a new Store on the same folder: everything comes from the index
    assert reads == [] and len(again.commits) == 3 and len(again.warnings) == 1

    write(tmp_path, "run-1.json", run_record({SWA: 7e-3}, 1))  # changed (size and mtime)
    stat = (tmp_path / "run-2.json").stat()
    os.utime(tmp_path / "run-2.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched only
    (tmp_path / "run-0.json").unlink()
    write(tmp_path, "run-3.json", run_record({SWA: 4e-3}, 3))
    changed = query(tmp_path)
    assert sorted(reads) == ["run-1.json", "run-2.json", "run-3.json"]
    assert [point.median_s for point in changed.series[0].points] == [7e-3, 3e-3, 4e-3]

    reads.clear()
    (tmp_path / history_store.INDEX_NAME).unlink()  # safe to delete: rebuilt from the files
    rebuilt = query(tmp_path)
    assert sorted(reads) == ["notes.json", "run-1.json", "run-2.json", "run-3.json"]
    assert [point.median_s for point in rebuilt.series[0].points] == [7e-3, 3e-3, 4e-3]


def test_corrupt_or_stale_index_is_rebuilt(tmp_path, reads):
    write(tmp_path, "run.json", run_record({SWA: 1e-3}, 0))
    (tmp_path / history_store.INDEX_NAME).write_text("this is not a database" * 100)
    assert query(tmp_path).series[0].points[0].median_s == 1e-3 and reads == ["run.json"]
    with history_store.Store([tmp_path]) as store:  # an index of another version is rebuilt, too
        store._indexes[0][1].execute(f"PRAGMA user_version = {history_store.INDEX_VERSION + 1}")
    reads.clear()
    assert query(tmp_path).series[0].points[0].median_s == 1e-3 and reads == ["run.json"]


def test_an_unusable_index_path_falls_back_to_memory_with_a_warning(tmp_path, reads):
    write(tmp_path, "run.json", run_record({SWA: 1e-3}, 0))
    (tmp_path / history_store.INDEX_NAME).mkdir()  # sqlite cannot open a folder
    for _ in range(2):
        result = query(tmp_path)
        assert result.series[0].points[0].median_s == 1e-3
        assert len(result.warnings) == 1 and "cannot use the index" in result.warnings[0]
    assert reads == ["run.json", "run.json"]  # nothing is kept between stores then


def test_cache_dir_holds_the_index_of_each_folder(tmp_path, reads):
    baselines, runs, cache = tmp_path / "baselines", tmp_path / "runs", tmp_path / "cache"
    write(baselines, "base.json", run_record({SWA: 1e-3}, 0))
    write(runs, "new.json", run_record({SWA: 2e-3}, 1))
    for _ in range(2):
        with history_store.Store([baselines, runs], cache_dir=cache) as store:
            result = history_store.query(store)
    assert reads == ["base.json", "new.json"]  # read once, across two stores
    assert [point.median_s for point in result.series[0].points] == [1e-3, 2e-3]
    assert len(list(cache.glob("*.sqlite"))) == 2
    assert not (baselines / history_store.INDEX_NAME).exists()


# ---- change points ----


def test_a_planted_10_percent_step_is_found_at_its_commit(tmp_path):
    # 20 series (10 seeds, 2 rows): 20 commits, 2% noise per run, 10% slower from commit 12 on.
    located = []
    for seed in range(10):
        noisy_series(tmp_path / str(seed), commits=20, seed=seed, step_at=12)
        for series in query(tmp_path / str(seed)).series:
            (change,) = series.change_points
            located.append(change.index)
            if change.index == 12:
                assert change.commit.sha == sha_of(12)
                assert change.commit.timestamp == (START + timedelta(hours=12)).isoformat()
                assert (change.before, change.after) == (12, 8)
                assert change.ratio == pytest.approx(1.10, rel=0.03)
                assert change.p_value < change_points.DEFAULT_ALPHA
    # A run at the step that drew -2.7 sigma of noise is nearer the old level: the least-squares fit
    # then puts the step one commit late (measured: 1 of these 20).
    assert sum(index == 12 for index in located) >= 18 and all(abs(index - 12) <= 1 for index in located)


def test_flat_noisy_history_has_no_change_points(tmp_path):
    noisy_series(tmp_path, commits=30, seed=11, keys=[SWA[:1] + (f"case{index}",) + SWA[2:] for index in range(50)])
    result = query(tmp_path)
    assert len(result.series) == 50
    assert sum(len(series.change_points) for series in result.series) <= 1


# ---- output ----


def test_table_marks_the_change_point_commit(tmp_path):
    noisy_series(tmp_path, commits=8, seed=0, step_at=4, step=1.5, keys=[SWA])
    lines = history_plot.table(query(tmp_path))[SWA]
    assert [line[0].label for line in lines] == [sha_of(commit)[:8] for commit in range(8)]
    assert lines[0][0].timestamp == START.isoformat() and lines[0][1] == pytest.approx(1e-3, rel=0.1)
    assert [bool(line[2]) for line in lines] == [False] * 4 + [True] + [False] * 3
    assert lines[4][2].startswith("step ×1.5") and lines[4][2].endswith("(slower)")


def _decoded(path):
    with Image.open(path) as image:
        image.load()
        pixels = np.asarray(image.convert("RGB"))
    return pixels


def test_plot_writes_a_readable_png(tmp_path):
    keys = [
        (benchmark, f"case{index}", impl, "bfloat16", "fwd")
        for benchmark in ("attention.sliding_window", "ssm.selective_scan")
        for index in range(4)
        for impl in ("triton", "reference")
    ]
    noisy_series(tmp_path / "runs", commits=40, seed=5, step_at=25, keys=keys)
    result = query(tmp_path / "runs")
    assert sum(len(series.change_points) for series in result.series) >= len(keys) - 1
    path = history_plot.plot(result, tmp_path / "history.png")
    pixels = _decoded(path)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 800
    assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # not blank


def test_plot_of_an_empty_history_still_writes_a_png(tmp_path):
    result = query(tmp_path)
    assert result.series == []
    pixels = _decoded(history_plot.plot(result, tmp_path / "empty.png"))
    assert pixels.std() > 0


def test_history_command_shows_the_table_the_step_and_writes_the_plot(tmp_path, capsys):
    from menagerie.harness import cli

    noisy_series(tmp_path / "store", 12, seed=3, step_at=7)
    plot = tmp_path / "history.png"
    assert (
        cli.main(
            [
                "history",
                "attention",
                "--store",
                str(tmp_path / "store"),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--plot",
                str(plot),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "history on NVIDIA H200" in out and "12 commits" in out
    assert f"from commit {sha_of(7)[:8]}" in out and "slower" in out
    with Image.open(plot) as image:
        assert image.size[0] > 100
    assert (
        cli.main(
            ["history", "no_such_family", "--store", str(tmp_path / "store"), "--cache-dir", str(tmp_path / "cache")]
        )
        == 2
    )
    assert cli.main(["history", "--store", str(tmp_path / "missing")]) == 2


def test_history_command_shows_each_dirty_run_of_one_sha_in_its_own_column(tmp_path, capsys):
    from menagerie.harness import cli

    write(tmp_path / "store", "a.json", run_record({SWA: 1.0e-3}, 1, dirty=True, hours=1))
    write(tmp_path / "store", "b.json", run_record({SWA: 2.0e-3}, 1, dirty=True, hours=2))
    assert cli.main(["history", "--store", str(tmp_path / "store"), "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "2 commits" in out and "1 ms" in out and "2 ms" in out
