"""``scripts/gpu_check.sh --dry-run``: every Python-level step of the GPU session's one call, on the CPU.

A typo in the script or a broken step must fail here, not in a lent GPU machine's minutes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_runs_every_step(tmp_path):
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")},
        "PYTHON": sys.executable,
        "MENAGERIE_CACHE_DIR": str(tmp_path / "cache"),
    }
    # One family is enough to prove every step: each benchmark runs through the command in test_cli.py.
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--dry-run", "small", str(tmp_path), "elementwise"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "tests collected" in done.stdout  # the GPU tests were collected, not run
    record = json.loads((tmp_path / "tiny-fp32.json").read_text())
    assert record["config"]["size"] == "tiny" and record["config"]["device"] == "cpu"
    assert {row["benchmark"] for row in record["rows"]} == {"elementwise.bias_gelu"}
    assert all(row["status"] in ("ok", "skipped") for row in record["rows"]), [
        (row["impl"], row["status"], row["reason"]) for row in record["rows"] if row["status"] not in ("ok", "skipped")
    ]
