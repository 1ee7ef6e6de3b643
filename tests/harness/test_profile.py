"""``menagerie profile``: traces that TensorBoard's torch-tb-profiler plugin lists, and the operator table."""

import gzip
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import torch

from menagerie.harness import profile, registry, runner
from menagerie.harness.cli import main

CASE = "64x257"  # elementwise.bias_gelu's smallest tiny case: interpreted Triton takes ~0.1 s a call
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("profiles")
    benchmarks = registry.select(["elementwise.bias_gelu"])
    config = runner.RunConfig(size="tiny", device=CPU, timer="cpu", cases=(CASE,), modes=("fwd", "bwd"))
    run_dir = profile.new_run_dir(logdir, benchmarks)
    rows = profile.profile(runner.plan(benchmarks, config), CPU, run_dir, steps=1, top=5)
    return logdir, run_dir, rows


def test_rows_are_profiled_or_skipped_with_a_reason(profiled):
    _, run_dir, rows = profiled
    by_label = {row.label: row for row in rows}
    assert set(by_label) == {
        f"elementwise.bias_gelu-{CASE}-float32-{mode}-{impl}"
        for mode in ("fwd", "bwd")
        for impl in ("torch", "triton_fused", "torch_compile")
    }
    for row in rows:
        if row.impl == "torch_compile":
            assert row.status == "skipped" and "CUDA" in row.reason and row.trace is None
            continue
        assert row.status == "profiled", row.reason
        assert row.trace.parent == run_dir and row.trace.name.endswith(".pt.trace.json")
        assert json.loads(row.trace.read_text())["traceEvents"]
        assert row.call_s > 0 and 0 < len(row.ops) <= 5
        assert [op.self_cpu_s for op in row.ops] == sorted((op.self_cpu_s for op in row.ops), reverse=True)
        assert row.label not in {op.name for op in row.ops}  # the row's own range is not an operator
    assert "aten::gelu" in {op.name for op in by_label[f"elementwise.bias_gelu-{CASE}-float32-fwd-torch"].ops}


def test_each_call_sits_in_a_range_named_after_its_row(profiled):
    _, _, rows = profiled
    row = next(row for row in rows if row.status == "profiled")
    names = {event.get("name") for event in json.loads(row.trace.read_text())["traceEvents"]}
    assert row.label in names


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get_json(url: str):
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
        if response.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
    return json.loads(body)


def test_tensorboard_profiler_plugin_lists_the_run_and_its_rows(profiled, tmp_path):
    pytest.importorskip("torch_tb_profiler", reason="the torch-tb-profiler plugin comes with menagerie[report]")
    logdir, run_dir, rows = profiled
    port = _free_port()
    base = f"http://127.0.0.1:{port}/data/plugin/pytorch_profiler"
    with open(tmp_path / "tensorboard.log", "w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tensorboard.main",
                "--logdir",
                str(logdir),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=log,
        )
    try:
        runs, deadline = [], time.monotonic() + 60
        while run_dir.name not in runs and time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "tensorboard.log").read_text()
            time.sleep(1)
            try:
                runs = _get_json(f"{base}/runs")["runs"]
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                continue
        assert run_dir.name in runs, (tmp_path / "tensorboard.log").read_text()
        workers = _get_json(f"{base}/workers?run={run_dir.name}&view=Operator")
        assert set(workers) == {row.label for row in rows if row.status == "profiled"}
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_cli_profile_prints_the_operator_table(tmp_path, capsys):
    code = main(
        [
            "profile",
            "elementwise.bias_gelu",
            "--case",
            CASE,
            "--mode",
            "fwd",
            "--impl",
            "torch",
            "--steps",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    [run_dir] = list(tmp_path.iterdir())
    assert run_dir.name.endswith("_elementwise.bias_gelu")
    assert len(list(run_dir.glob("*.pt.trace.json"))) == 1
    assert "top operators by self CPU time" in out and "aten::gelu" in out
    assert f"tensorboard --logdir {tmp_path}" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["profile", "no_such_benchmark"], "no benchmark matches"),
        (["profile", "elementwise", "--case", "nothing-like-this"], "nothing to profile"),
        (["profile", "elementwise", "--impl", "nothing-like-this"], "nothing to profile"),
        (["profile", "elementwise", "--device", "tpu"], "--device"),
    ],
)
def test_cli_profile_rejects_bad_arguments(args, message, tmp_path, capsys):
    assert main([*args, "--out", str(tmp_path)]) == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps the one-line message at the terminal's width
    assert err.startswith("menagerie profile: error:") and message in err
    assert not list(tmp_path.iterdir())  # no empty run folder left behind


def test_cli_profile_needs_a_name_and_positive_steps():
    for args in (["profile"], ["profile", "elementwise", "--steps", "0"]):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2
