"""MLPerf log scoring and the compliance checker on hand-made logs."""

import json

import pytest

from harness.cli import main
from models import mlperf


def write_log(path, records):
    lines = [":::MLLOG " + json.dumps({"namespace": "", "time_ms": time_ms, "event_type": "POINT_IN_TIME", "key": key,
                                       "value": value, "metadata": metadata})
             for time_ms, key, value, metadata in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_records(minutes, status="success", processes=8):
    start = 1_000_000
    return [(start - 10, "train_samples", 1_281_167, {}), (start - 5, mlperf.PROCESSES_KEY, processes, {}),
            (start, "run_start", None, {}),
            *[(start + 1000 * e, "epoch_stop", None, {"epoch_num": e}) for e in range(36)],
            (start + 1, "eval_accuracy", 0.7601, {"epoch_num": 36}),
            (start + int(minutes * 60_000), "run_stop", None, {"status": status})]


def test_score_reads_time_to_train_and_throughput(tmp_path):
    score = mlperf.score(write_log(tmp_path / "a.log", run_records(13.33)))
    assert score.minutes == pytest.approx(13.33) and score.epochs == 36 and score.processes == 8
    assert score.img_per_s == pytest.approx(36 * 1_281_167 / (13.33 * 60))
    assert score.img_per_s_per_accelerator == pytest.approx(score.img_per_s / 8)
    aborted = mlperf.score(write_log(tmp_path / "b.log", run_records(20, status="aborted")))
    assert aborted.minutes is None and aborted.status == "aborted"


def test_olympic_mean_drops_fastest_and_slowest():
    assert mlperf.olympic_mean([10.0, 14.0, 12.0, 13.0, 30.0]) == pytest.approx(13.0)
    with pytest.raises(mlperf.LogError, match="at least 3"):
        mlperf.olympic_mean([1.0, 2.0])


def test_unusable_logs_are_named(tmp_path):
    with pytest.raises(mlperf.LogError, match="does not exist"):
        mlperf.read_log(tmp_path / "none.log")
    (tmp_path / "plain.log").write_text("no mllog here\n")
    with pytest.raises(mlperf.LogError, match="no :::MLLOG lines"):
        mlperf.read_log(tmp_path / "plain.log")
    partial = write_log(tmp_path / "partial.log", run_records(5)[:-1])
    with pytest.raises(mlperf.LogError, match="no run_stop record"):
        mlperf.score(partial)


def test_checker_fails_an_incomplete_log_and_cli_reports_it(tmp_path):
    log = write_log(tmp_path / "incomplete.log", run_records(13.0))
    passed, report = mlperf.check_compliance(log, tmp_path / "check.log")
    assert not passed and "FAILED" in report
    assert (tmp_path / "check.log").is_file()
    assert main(["mlperf", str(log), "--out", str(tmp_path / "checks")]) == 1
    assert main(["mlperf", str(tmp_path / "missing.log")]) == 2


def test_cli_compares_five_runs_with_the_published_result(tmp_path, capsys):
    logs = [str(write_log(tmp_path / f"run{i}.log", run_records(minutes)))
            for i, minutes in enumerate([12.0, 13.0, 14.0, 15.0, 40.0])]
    main(["mlperf", *logs, "--out", str(tmp_path / "checks")])
    output = capsys.readouterr().out
    assert "olympic mean of 5" in output and "14.00" in output and "13.33" in output
