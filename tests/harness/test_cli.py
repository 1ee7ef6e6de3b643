import json
import os
import subprocess
import sys

import numpy as np
import pytest

from harness import results
from harness.cli import main
from harness.stats import summarize
from tests.harness.test_stats import realistic_samples


def menagerie(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=600)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    # Every registered benchmark, with the fewest repetitions: interpreted Triton takes ~1 s a call.
    done = menagerie("run", "--size", "tiny", "--budget", "0.01", "--warmup", "0.01", "--seeds", "1",
                     "--min-reps", "2", "--max-reps", "3", "--out", str(out))
    return done, out


def test_run_tiny_end_to_end_writes_a_valid_record(tiny_run):
    done, out = tiny_run
    assert done.returncode == 0, done.stdout + done.stderr
    [path] = list(out.glob("*.json"))
    record = results.load_run(path)
    assert record["config"]["size"] == "tiny" and record["config"]["device"] == "cpu"
    rows = {(row["impl"], row["mode"]) for row in record["rows"] if row["benchmark"] == "elementwise.bias_gelu"}
    assert {("torch", "fwd"), ("triton_fused", "fwd"), ("triton_fused", "bwd"), ("triton_fused", "fwd_bwd")} <= rows
    statuses = {row["impl"]: row["status"] for row in record["rows"] if row["benchmark"] == "elementwise.bias_gelu"}
    assert statuses == {"torch": "ok", "triton_fused": "ok", "torch_compile": "skipped"}
    assert "elementwise.bias_gelu" in done.stdout and "wrote" in done.stdout


def test_compare_against_itself_passes_and_baseline_gate_runs(tiny_run, tmp_path):
    _, out = tiny_run
    [path] = list(out.glob("*.json"))
    done = menagerie("compare", str(path), str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no regression" in done.stdout

    gated = menagerie("run", "elementwise", "--case", "64x257", "--mode", "fwd", "--budget", "0.05",
                      "--warmup", "0.01", "--out", str(tmp_path), "--baseline", str(path), "--threshold", "100")
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert "comparison" in gated.stdout and "missing" in gated.stdout


def test_compare_exits_one_on_regression(tiny_run, tmp_path):
    _, out = tiny_run
    [path] = list(out.glob("*.json"))
    rng = np.random.default_rng(0)
    old, new = json.loads(path.read_text()), json.loads(path.read_text())
    for old_row, new_row in zip(old["rows"], new["rows"]):
        if old_row["samples_s"]:  # plant 30 samples per row, then a 2x slowdown
            old_row["samples_s"] = realistic_samples(rng, 1e-3, n=30).tolist()
            new_row["samples_s"] = realistic_samples(rng, 2e-3, n=30).tolist()
            old_row["stats"], new_row["stats"] = summarize(old_row["samples_s"]), summarize(new_row["samples_s"])
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    done = menagerie("compare", str(tmp_path / "old.json"), str(tmp_path / "new.json"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "regression" in done.stdout
    assert menagerie("compare", str(tmp_path / "old.json"), str(tmp_path / "old.json")).returncode == 0


@pytest.mark.parametrize("args, message", [
    (["run", "--size", "huge"], "invalid choice"),
    (["run", "no_such_benchmark"], "no benchmark matches"),
    (["run", "--timer", "events", "--device", "cpu"], "--timer events"),
    (["run", "--device", "tpu"], "--device"),
    (["run", "--budget", "-1"], "positive"),
    (["run", "--min-reps", "9", "--max-reps", "3"], "--min-reps"),
    (["run", "--case", "nothing-like-this"], "nothing to run"),
    (["compare", "missing-old.json", "missing-new.json"], "cannot read"),
    (["compare", "a.json", "b.json", "--threshold", "abc"], "expected a number"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_bad_arguments_exit_two_with_a_message(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(args)
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    captured = capsys.readouterr()
    assert code == 2, captured.out + captured.err
    assert message in captured.err


def test_list_and_env():
    listed = menagerie("list")
    assert listed.returncode == 0 and "elementwise.bias_gelu" in listed.stdout
    env = menagerie("env")
    assert env.returncode == 0, env.stderr
    assert "copy_gbps" in env.stdout and "measured" in env.stdout and "torch" in env.stdout
