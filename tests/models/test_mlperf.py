"""MLPerf log scoring and the compliance checker on hand-made logs."""

import json

import pytest

from menagerie.harness.cli import main
from menagerie.models import mlperf


def write_log(path, records):
    lines = [
        ":::MLLOG "
        + json.dumps(
            {
                "namespace": "",
                "time_ms": time_ms,
                "event_type": "POINT_IN_TIME",
                "key": key,
                "value": value,
                "metadata": metadata,
            }
        )
        for time_ms, key, value, metadata in records
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_records(
    minutes, status="success", processes=8, platform="8xNVIDIA H100 80GB HBM3", throughputs=(), epochs=36, batch=3200
):
    start = 1_000_000
    return [
        (start - 20, "submission_benchmark", "resnet", {}),
        (start - 15, "submission_platform", platform, {}),
        (start - 12, "global_batch_size", batch, {}),
        (start - 10, "train_samples", 1_281_167, {}),
        (start - 5, mlperf.PROCESSES_KEY, processes, {}),
        (start, "run_start", None, {}),
        *[(start + 1000 * e, "epoch_stop", None, {"epoch_num": e}) for e in range(epochs)],
        *[
            (start + 1000 * e + 1, "tracked_stats", {"throughput": t}, {"step": e + 1})
            for e, t in enumerate(throughputs)
        ],
        (start + 1, "eval_accuracy", 0.7601, {"epoch_num": epochs}),
        (start + int(minutes * 60_000), "run_stop", None, {"status": status}),
    ]


def write_set(folder, minutes, **options):
    """One log per entry of ``minutes`` in ``folder``; None makes an aborted run."""
    folder.mkdir(exist_ok=True)
    return [
        str(
            write_log(
                folder / f"run{i}.log",
                run_records(20 if m is None else m, "aborted" if m is None else "success", **options),
            )
        )
        for i, m in enumerate(minutes)
    ]


def test_score_reads_time_to_train_and_throughput(tmp_path):
    score = mlperf.score(write_log(tmp_path / "a.log", run_records(13.33)))
    assert score.minutes == pytest.approx(13.33) and score.epochs == 36 and score.processes == 8
    assert score.img_per_s == pytest.approx(36 * 1_281_167 / (13.33 * 60))
    assert score.img_per_s_per_accelerator == pytest.approx(score.img_per_s / 8)
    aborted = mlperf.score(write_log(tmp_path / "b.log", run_records(20, status="aborted")))
    assert aborted.minutes is None and aborted.status == "aborted"


def test_score_reads_the_median_tracked_throughput(tmp_path):
    score = mlperf.score(write_log(tmp_path / "a.log", run_records(13.0, throughputs=[100.0, 800.0, 820.0, 810.0])))
    assert score.tracked_img_per_s == pytest.approx(805.0)  # median over the 4 epochs
    assert score.tracked_img_per_s_per_accelerator == pytest.approx(805.0 / 8)
    assert score.global_batch_size == 3200 and score.platform == "8xNVIDIA H100 80GB HBM3"
    assert mlperf.score(write_log(tmp_path / "b.log", run_records(13.0))).tracked_img_per_s is None


def test_olympic_mean_of_five_without_failure_drops_fastest_and_slowest():
    assert mlperf.olympic_mean([10.0, 14.0, 12.0, 13.0, 30.0]) == pytest.approx(13.0)


@pytest.mark.parametrize("failure", [None, float("inf")])
def test_one_failure_counts_as_the_slowest_run(failure):
    # the failure is dropped as the slowest, the fastest success too: the mean of 12, 13 and 14
    assert mlperf.olympic_mean([10.0, 14.0, failure, 13.0, 12.0]) == pytest.approx(13.0)
    assert mlperf.set_problem([10.0, 14.0, failure, 13.0, 12.0]) is None


def test_two_failures_or_not_five_runs_are_not_a_valid_set():
    with pytest.raises(mlperf.InvalidSetError, match="2 of the 5 runs failed"):
        mlperf.olympic_mean([10.0, None, 12.0, float("inf"), 13.0])
    with pytest.raises(mlperf.InvalidSetError, match="exactly 5 runs, got 4"):
        mlperf.olympic_mean([10.0, 11.0, 12.0, 13.0])
    assert "got 6" in mlperf.set_problem([10.0] * 6)


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


def test_cli_scores_five_runs_against_the_h100_anchor(tmp_path, capsys):
    logs = write_set(tmp_path, [12.0, 13.0, 14.0, 15.0, 40.0], throughputs=[8000.0, 8800.0, 9000.0])
    main(["mlperf", *logs, "--out", str(tmp_path / "checks")])
    output = capsys.readouterr().out
    assert "8xH100" in output and "13.27" in output and "7,161" in output
    assert "1,100" in output  # the median tracked throughput per accelerator: 8,800 / 8


def test_cli_reports_the_rules_answer_for_one_and_two_failures_and_four_logs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mlperf, "check_compliance", lambda log, output: (True, "passed"))  # hand logs are incomplete
    one = write_set(tmp_path / "one", [10.0, 14.0, None, 13.0, 12.0])
    assert main(["mlperf", *one, "--out", str(tmp_path / "checks")]) == 0
    assert "1 failure counted as the slowest run): 13.00 minutes" in capsys.readouterr().out
    two = write_set(tmp_path / "two", [10.0, None, 12.0, None, 13.0])
    assert main(["mlperf", *two, "--out", str(tmp_path / "checks")]) == 1
    assert "not a valid set: 2 of the 5 runs failed" in capsys.readouterr().out
    assert main(["mlperf", *one[:4], "--out", str(tmp_path / "checks")]) == 1
    output = capsys.readouterr().out
    assert "not a valid set: the rules score ResNet over exactly 5 runs, got 4" in output
    assert all(cell in output for cell in ("10.00", "14.00", "aborted", "13.00"))  # each run's row is still printed


def test_anchor_follows_the_platform_unless_overridden(tmp_path, capsys):
    assert mlperf.choose_anchor(["8xNVIDIA H200"])[0] is mlperf.PUBLISHED["h200"]
    assert mlperf.choose_anchor(["8xNVIDIA H100 80GB HBM3"])[0] is mlperf.PUBLISHED["h100"]
    anchor, why = mlperf.choose_anchor(["1xCPU"])
    assert anchor is mlperf.PUBLISHED["h100"] and "by default" in why
    assert mlperf.choose_anchor(["8xNVIDIA H200"], "h100")[0] is mlperf.PUBLISHED["h100"]
    logs = write_set(tmp_path, [12.0, 13.0, 14.0, 15.0, 16.0], platform="8xNVIDIA H200")
    main(["mlperf", *logs, "--out", str(tmp_path / "checks")])
    assert "12.03" in capsys.readouterr().out and "h200_ngc24.04_mxnet" in mlperf.PUBLISHED["h200"].source
    main(["mlperf", *logs, "--out", str(tmp_path / "checks"), "--anchor", "h100"])
    assert "13.27" in capsys.readouterr().out


def test_rcp_check_reports_on_toy_slow_enough_and_too_fast_sets(tmp_path):
    toy = []
    for i in range(5):
        log = mlperf.MLPerfLog(tmp_path / "toy" / f"run{i}.log")
        log.submission("1xCPU", "open", 1)
        log.hyperparameters(
            optimizer="sgd",
            global_batch_size=64,
            accumulation=1,
            base_lr=0.4,
            end_lr=1e-4,
            poly_power=2.0,
            decay_steps=10,
            warmup_epochs=0.5,
            momentum=0.9,
            weight_decay=5e-5,
            bn_span=64,
            train_samples=1797,
            eval_samples=360,
            seed=i,
        )
        log.start("run_start")
        log.event("eval_accuracy", 0.93, epoch_num=3)
        log.end("run_stop", status="success")
        log.close()
        toy.append(log.path)
    scores = [mlperf.score(path) for path in toy]
    result = mlperf.check_rcp(toy, scores, tmp_path / "rcp.log")
    assert result.status == "not applicable" and "not ImageNet" in result.message and "checker says" in result.message
    usual = write_set(tmp_path / "usual", [13.0] * 5, epochs=36)  # NVIDIA's v4.0 runs converge at epoch 35 of 3200
    assert mlperf.check_rcp(usual, [mlperf.score(path) for path in usual], tmp_path / "rcp2.log").status == "passed"
    fast = write_set(tmp_path / "fast", [5.0] * 5, epochs=10)  # far faster than the RCPs allow
    result = mlperf.check_rcp(fast, [mlperf.score(path) for path in fast], tmp_path / "rcp3.log")
    assert result.status == "failed" and "RCP" in result.message


def test_rcp_checker_crash_is_reported(tmp_path):
    logs = [str(write_log(tmp_path / f"r{i}.log", run_records(13.0)[1:])) for i in range(5)]  # no benchmark name
    result = mlperf.check_rcp(logs, [mlperf.score(path) for path in logs], tmp_path / "rcp.log")
    assert result.status == "crashed" and "exited with" in result.message
