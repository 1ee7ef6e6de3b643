"""Records survive faults: a kill or Ctrl-C in the middle of ``run --repeat``, a full disk at a write.

Each test checks that nothing recorded before the fault is lost or changed, and that the next
command works or says exactly what to do.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from menagerie.harness import results
from menagerie.harness.cli import main
from tests.harness.test_cli import shell_environment

REPEATED = (
    "run",
    "elementwise",
    "--case",
    "64x257",
    "--impl",
    "torch",
    "--mode",
    "fwd",
    "--budget",
    "0.05",
    "--warmup",
    "0.01",
    "--seeds",
    "1",
    "--repeat",
    "2",
)


def start(out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "menagerie.harness.cli", *REPEATED, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=shell_environment(),
        start_new_session=True,
    )  # its own process group: the signal reaches the replicate too


def first_replicate(out: Path, timeout: float = 300) -> Path:
    """The work folder, once its first replicate record is complete."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for folder in out.glob(".replicates-*"):
            if (folder / "replicate-0.json").exists():
                return folder
        time.sleep(0.2)
    raise AssertionError(f"no replicate record appeared in {out}")


def resume(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "menagerie.harness.cli", "run", "--resume", str(folder)],
        capture_output=True,
        text=True,
        env=shell_environment(),
        timeout=600,
    )


def test_a_killed_repeat_run_resumes_keeping_its_replicates(tmp_path):
    out = tmp_path / "runs"
    process = start(out)
    folder = first_replicate(out)
    kept = (folder / "replicate-0.json").read_text()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert json.loads((folder / "replicate-0.json").read_text()) == json.loads(kept)
    done = resume(folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "already recorded" in done.stderr and not folder.exists()
    [path] = out.glob("*.json")
    record = results.load_run(path)
    assert record["config"]["repeat"] == 2 and len(record["replicates"]) == 2
    first = json.loads(kept)["rows"][0]
    assert record["rows"][0]["replicate_medians_s"][0] == first["replicate_medians_s"][0]


def test_ctrl_c_exits_130_with_the_replicates_kept_and_the_way_on(tmp_path):
    out = tmp_path / "runs"
    process = start(out)
    folder = first_replicate(out)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert f"continue with `menagerie run --resume {folder}`" in " ".join(stderr.split())
    assert "Traceback" not in stderr
    results.load_run(folder / "replicate-0.json")  # intact
    assert not list(out.glob("*.json"))  # no half-merged record


def test_resume_of_a_folder_that_is_not_one_says_so(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "is not a replicate folder" in capsys.readouterr().err


def test_a_full_disk_at_a_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "record.json"
    results.write_json_atomically({"before": 1}, path)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as raised:
        results.write_json_atomically({"after": 2}, path)
    assert raised.value.errno == errno.ENOSPC
    assert json.loads(path.read_text()) == {"before": 1}
    assert [entry.name for entry in tmp_path.iterdir()] == ["record.json"]


def test_a_full_disk_during_a_command_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "x.json"))

    monkeypatch.setattr(os, "fsync", full)
    code = main([*REPEATED[:-2], "--min-reps", "2", "--max-reps", "2", "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 1 and "No space left on device" in err and "Traceback" not in err
    assert not list((tmp_path / "runs").glob("*.json"))


@pytest.fixture(scope="module")
def good_record(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("good")
    assert main([*REPEATED[:-2], "--min-reps", "2", "--max-reps", "2", "--out", str(out / "good.json")]) == 0
    return out / "good.json"


def truncated(text: str) -> str:
    return text[: len(text) // 2]


def wrong_type(text: str) -> str:
    record = json.loads(text)
    record["rows"][0]["replicate_medians_s"] = "fast"
    return json.dumps(record)


def unknown_version(text: str) -> str:
    return json.dumps({**json.loads(text), "schema_version": 99})


DAMAGES = {
    "truncated": (truncated, "is not JSON", "not readable as JSON"),
    "wrong_type": (wrong_type, "not a valid menagerie run record", "malformed run record"),
    "unknown_version": (unknown_version, "schema_version 99", "schema_version 99"),
}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("command", ["compare", "report"])
def test_a_damaged_record_is_a_one_line_error(good_record, tmp_path, capsys, damage, command):
    edit, message, _ = DAMAGES[damage]
    bad = tmp_path / "bad.json"
    bad.write_text(edit(good_record.read_text()))
    argv = {
        "compare": ["compare", str(good_record), str(bad)],
        "report": ["report", str(bad), "--out", str(tmp_path / "report")],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(bad) in err and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("damage", DAMAGES)
def test_history_passes_over_a_damaged_record_naming_it(good_record, tmp_path, capsys, damage):
    edit, _, message = DAMAGES[damage]
    store = tmp_path / "store"
    store.mkdir()
    (store / "good.json").write_text(good_record.read_text())
    (store / "bad.json").write_text(edit(good_record.read_text()))
    assert main(["history", "--store", str(store)]) == 0
    captured = capsys.readouterr()
    assert "elementwise.bias_gelu" in captured.out
    [warning] = captured.err.strip().splitlines()
    assert str(store / "bad.json") in warning and message in warning


def test_a_corrupt_history_index_is_rebuilt_with_a_notice(good_record, tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir()
    (store / "good.json").write_text(good_record.read_text())
    assert main(["history", "--store", str(store)]) == 0
    index = store / ".menagerie-index.sqlite"
    assert index.is_file()
    index.write_bytes(b"this is not a SQLite database" * 100)
    capsys.readouterr()
    assert main(["history", "--store", str(store)]) == 0
    captured = capsys.readouterr()
    assert "elementwise.bias_gelu" in captured.out and "rebuilt" in captured.err, captured.err
    assert len([line for line in captured.err.splitlines() if "rebuilt" in line]) == 1


def test_an_index_of_an_old_layout_is_rebuilt_with_a_notice(good_record, tmp_path, capsys):
    import sqlite3

    store = tmp_path / "store"
    store.mkdir()
    (store / "good.json").write_text(good_record.read_text())
    with sqlite3.connect(store / ".menagerie-index.sqlite") as old:
        old.execute("CREATE TABLE runs (path TEXT)")  # a layout from before the index had a version
    assert main(["history", "--store", str(store)]) == 0
    captured = capsys.readouterr()
    assert "elementwise.bias_gelu" in captured.out and "it had another layout" in captured.err


def test_two_runs_into_one_folder_at_once_both_keep_their_records(tmp_path):
    out = tmp_path / "runs"
    command = [
        sys.executable,
        "-m",
        "menagerie.harness.cli",
        *REPEATED[:-2],
        "--min-reps",
        "2",
        "--max-reps",
        "2",
        "--out",
        str(out),
    ]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=shell_environment())
        for _ in range(2)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    records = sorted(out.glob("*.json"))
    assert len(records) == 2 and all(results.load_run(path)["rows"] for path in records)


def test_a_name_taken_at_the_same_moment_gets_the_next_free_one(good_record, tmp_path):
    record = results.load_run(good_record)
    first, second = results.write_run(record, tmp_path), results.write_run(record, tmp_path)
    assert first != second and second.name == first.name.replace(".json", "-2.json")
    assert results.load_run(first) == results.load_run(second) == record
