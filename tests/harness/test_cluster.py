"""``menagerie submit`` and ``collect``: shards as a job array on a real one-node SLURM cluster
(tests/harness/slurm_cluster.py) and as local processes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from menagerie.harness import cluster, results
from menagerie.harness.cli import main
from tests.harness.slurm_cluster import Cluster, Unavailable
from tests.harness.test_shards import ROWS
from tests.models.test_ddp import free_port, write_images


def same_rows(first: dict, second: dict) -> bool:
    def verdict(row):
        return results.row_key(row), row["status"], row["accuracy"]["passed"] if row["accuracy"] else None

    return [verdict(row) for row in first["rows"]] == [verdict(row) for row in second["rows"]]


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory):
    path = tmp_path_factory.mktemp("unsharded") / "whole.json"
    assert main(["run", *ROWS, "--out", str(path)]) == 0
    return results.load_run(path)


@pytest.fixture(scope="module")
def slurm():
    # Not under pytest's temporary folder: munged wants every folder above its socket open to all.
    folder = Path(tempfile.mkdtemp(prefix="menagerie-slurm-"))
    try:
        cluster_ = Cluster(folder).start()
    except Unavailable as reason:
        shutil.rmtree(folder)
        pytest.skip(str(reason))
    patch = pytest.MonkeyPatch()
    patch.setenv("SLURM_CONF", str(cluster_.conf))
    yield cluster_
    patch.undo()
    cluster_.stop()
    shutil.rmtree(folder, ignore_errors=True)


def collect(folder, *options):
    return main(["collect", str(folder), "--wait", "--timeout", "120", *options])


def test_three_shards_on_slurm_merge_to_the_unsharded_run(slurm, unsharded, tmp_path, capsys):
    folder = tmp_path / "submission"
    assert main(["submit", "--shards", "3", "--time", "10", "--folder", str(folder), "run", *ROWS]) == 0
    assert "submitted 3 shard(s)" in capsys.readouterr().out
    manifest = json.loads((folder / "submission.json").read_text())
    assert manifest["executor"] == "slurm" and sorted(manifest["jobs"]) == ["1", "2", "3"]
    assert all("_" in job for job in manifest["jobs"].values())  # array tasks: <job>_<task>
    assert collect(folder, "--out", str(tmp_path / "merged.json")) == 0
    assert "all 3 shards done" in capsys.readouterr().out
    assert same_rows(results.load_run(tmp_path / "merged.json"), unsharded)


def test_a_cancelled_shard_is_resubmitted_and_the_others_never_rerun(slurm, unsharded, tmp_path, capsys):
    folder = tmp_path / "submission"
    assert main(["submit", "--shards", "3", "--time", "10", "--folder", str(folder), "run", *ROWS]) == 0
    jobs = json.loads((folder / "submission.json").read_text())["jobs"]
    slurm.run("scancel", jobs["2"])
    assert collect(folder) == 1  # shard 2 ended without a record
    out = capsys.readouterr()
    assert "shard 2/3:" in out.out and "ended without a record" in out.err
    done = {index: os.stat(folder / "records" / f"shard-{index}.json").st_mtime_ns for index in (1, 3)}
    assert main(["collect", str(folder), "--resubmit-failed"]) == 0
    assert "resubmitted shard(s) 2" in capsys.readouterr().out
    again = json.loads((folder / "submission.json").read_text())["jobs"]
    assert again["1"] == jobs["1"] and again["3"] == jobs["3"] and again["2"] != jobs["2"]
    assert collect(folder, "--out", str(tmp_path / "merged.json")) == 0
    assert {index: os.stat(folder / "records" / f"shard-{index}.json").st_mtime_ns for index in (1, 3)} == done
    assert same_rows(results.load_run(tmp_path / "merged.json"), unsharded)


def test_local_executor_runs_the_same_path(unsharded, tmp_path, capsys):
    folder = tmp_path / "local"
    assert main(["submit", "--shards", "2", "--executor", "local", "--folder", str(folder), "run", *ROWS]) == 0
    jobs = json.loads((folder / "submission.json").read_text())["jobs"]
    os.kill(int(jobs["2"]), signal.SIGKILL)  # a shard killed (as preemption would) before it wrote its record
    assert collect(folder) == 1
    assert "shard 2/2: FAILED" in capsys.readouterr().out
    assert main(["collect", str(folder), "--resubmit-failed"]) == 0
    assert collect(folder, "--out", str(tmp_path / "merged.json")) == 0
    assert same_rows(results.load_run(tmp_path / "merged.json"), unsharded)


def test_slurm_options_come_from_pyproject_and_flags_override_them(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.menagerie.slurm]\npartition = "h100"\ntime_min = 30\n')
    assert cluster.configured_options(tmp_path / "pyproject.toml") == {"partition": "h100", "time_min": 30}
    (tmp_path / "pyproject.toml").write_text('[tool.menagerie.slurm]\npartitions = "h100"\n')
    with pytest.raises(cluster.ClusterError, match="unknown keys \\['partitions'\\]"):
        cluster.configured_options(tmp_path / "pyproject.toml")
    assert cluster.configured_options(tmp_path / "missing.toml") == {}


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--shards", "2", "run", "elementwise", "--shard", "1/2"], "submit sets --shard"),
        (["--shards", "2", "run", "elementwise", "--out=x"], "drop --out=x"),
        (["--shards", "2", "--executor", "slurm", "--folder", "{tmp}", "run", "elementwise"], "already holds"),
    ],
)
def test_submit_usage_errors(arguments, message, tmp_path, capsys):
    (tmp_path / "submission.json").write_text("{}")
    assert main(["submit", *[argument.format(tmp=tmp_path) for argument in arguments]]) == 2
    assert message in capsys.readouterr().err


def test_collect_names_what_it_cannot_read(tmp_path, capsys):
    assert main(["collect", str(tmp_path)]) == 2
    assert "no submission there" in capsys.readouterr().err
    (tmp_path / "submission.json").write_text('{"executor": "slurm"}')
    assert main(["collect", str(tmp_path)]) == 2
    assert "not a submission manifest" in capsys.readouterr().err


def test_a_slurm_state_that_no_client_knows_is_unknown(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue, no sacct
    start = time.monotonic()
    assert cluster._slurm_state("12_3") == "UNKNOWN" and time.monotonic() - start < 5


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """test_ddp's images: 4 classes of 8 (and 3 for validation), 20 px."""
    return write_images(tmp_path_factory.mktemp("ddp"))


# One tiny ResNet epoch on test_ddp's images (4 classes of 8, 20 px), batches of 4 per process.
TRAIN = (
    "resnet",
    "--arch",
    "resnet8",
    "--loader",
    "torchvision",
    "--epochs",
    "1",
    "--warmup-epochs",
    "0.5",
    "--batch-size",
    "4",
    "--image-size",
    "16",
    "--no-augment",
    "--workers",
    "1",
    "--eval-every",
    "1",
    "--target",
    "1.0",
)


def trained_processes(folder: Path) -> int:
    [record] = folder.glob("*.json")
    assert len(list(folder.glob("*.mllog"))) == 1  # one MLPerf log per run, from rank 0
    return json.loads(record.read_text())["result"]["processes"]


def test_two_srun_tasks_train_a_resnet_over_gloo(slurm, images, tmp_path):
    """srun starts two processes; they meet through SLURM's variables (models/slurm_rendezvous.py)."""
    # A port of this test's own: the other test worker's cluster numbers its jobs from 1 too.
    env = {**slurm.env, "MENAGERIE_MASTER_PORT": str(free_port())}
    done = subprocess.run(
        [
            "srun",
            "-n",
            "2",
            sys.executable,
            "-P",
            "-m",
            "menagerie.harness.cli",
            "train",
            *TRAIN,
            "--data",
            str(images),
            "--out",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert trained_processes(tmp_path) == 2


def test_submit_train_runs_one_job_of_two_processes(slurm, images, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MENAGERIE_MASTER_PORT", str(free_port()))  # sbatch passes the environment on
    out = tmp_path / "train"
    assert (
        main(
            [
                "submit",
                "--tasks-per-node",
                "2",
                "--time",
                "10",
                "--folder",
                str(tmp_path / "job"),
                "train",
                *TRAIN,
                "--data",
                str(images),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "1 node(s) x 2 process(es)" in " ".join(capsys.readouterr().out.split())
    deadline = time.monotonic() + 150
    while slurm.run("squeue", "-h").strip() and time.monotonic() < deadline:
        time.sleep(1)
    assert trained_processes(out) == 2


def test_a_refused_submission_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    (bin_folder / "sbatch").write_text(
        "#!/bin/sh\necho 'sbatch: error: no such partition' >&2\n"
        "echo 'sbatch: error: Batch job submission failed' >&2\nexit 1\n"
    )
    (bin_folder / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_folder}:{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    assert main(["submit", "--shards", "2", "--partition", "nope", "run", "elementwise"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "no such partition; sbatch: error: Batch job submission failed" in line
    assert not list((tmp_path / "results" / "cluster").glob("*"))  # the staging folder is gone
