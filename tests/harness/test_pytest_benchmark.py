import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_registered_cases_run_under_pytest_benchmark(tmp_path):
    out = tmp_path / "bench.json"
    # As a user runs it: the pytest console script in the checkout, outside any parallel (xdist) test session.
    environment = {
        name: value
        for name, value in os.environ.items()
        if name != "PYTHONPATH" and not name.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))
    }
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("pytest")),
            "benchmarks/",
            "--benchmark-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "64x257 and float32 and fwd-",
            "--benchmark-json",
            str(out),
            "--menagerie-rounds",
            "3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    timed = {entry["extra_info"]["impl"]: entry for entry in report["benchmarks"]}
    assert set(timed) == {"torch", "triton_fused"}
    for entry in timed.values():
        assert entry["extra_info"]["benchmark"] == "elementwise.bias_gelu"
        assert entry["extra_info"]["mode"] == "fwd" and entry["stats"]["rounds"] == 3
        assert entry["stats"]["median"] > 0
    assert "1 skipped" in done.stdout  # the CUDA-only torch.compile peer, reported with its reason
