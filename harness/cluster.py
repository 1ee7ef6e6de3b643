"""A sharded run as a SLURM job array through submitit, and its collection.

``submit`` sends ``menagerie run ARGS`` as N array tasks, task K running ``--shard K/N`` and
writing its record to ``FOLDER/records/shard-K.json``; ``FOLDER`` (default
``results/cluster/<job id>``) also holds submitit's scripts and logs and ``submission.json``, the
manifest that ``collect`` reads. The records on disk are the truth: a shard whose record is
there and valid is done and never runs again. The scheduler's state (through submitit, from
``sacct`` on SLURM) is a hint with a timeout, used only for shards without a record: a shard that
the scheduler reports finished without a record (failed, cancelled, preempted, out of time,
or gone from the scheduler's memory) can be resubmitted. ``executor="local"`` runs the same path
as local processes (submitit's LocalExecutor), for tests and laptops.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from menagerie.harness.results import ResultError, load_run, write_json_atomically
from menagerie.harness.toml_reader import tomllib

CLUSTER_DIR = Path("results/cluster")
MANIFEST = "submission.json"
STATE_TIMEOUT_S = 20  # one scheduler query at most this long; past it the state is UNKNOWN
# Scheduler states of a task that has not ended: its shard is waited for, never resubmitted.
BUSY = frozenset({"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED"})


class ClusterError(ValueError):
    """A submission that cannot be made or read: the message says what and where."""


@dataclass
class SlurmOptions:
    """What the array tasks ask the scheduler for; ``None`` leaves the cluster's default."""

    partition: str | None = None
    gpus_per_task: int | None = None
    time_min: int = 240
    account: str | None = None
    constraint: str | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None


def configured_options(pyproject: Path = Path("pyproject.toml")) -> dict:
    """The ``[tool.menagerie.slurm]`` table of ``pyproject`` (the current folder's), or {}; keys as
    ``SlurmOptions``'s fields."""
    if not pyproject.is_file():
        return {}
    try:
        table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("menagerie", {}).get("slurm", {})
    except tomllib.TOMLDecodeError as error:
        raise ClusterError(f"{pyproject}: {error}") from None
    unknown = set(table) - set(SlurmOptions.__dataclass_fields__)
    if unknown:
        raise ClusterError(
            f"{pyproject}: [tool.menagerie.slurm] has unknown keys {sorted(unknown)}; "
            f"known: {sorted(SlurmOptions.__dataclass_fields__)}"
        )
    return table


def run_shard(argv: list[str], index: int, count: int, out: str) -> str:
    """One array task: ``menagerie run ARGV --shard index/count --out out``; the record's path."""
    from menagerie.harness.cli import main

    code = main(["run", *argv, "--shard", f"{index}/{count}", "--out", out])
    if code not in (0, 1):  # 1: rows failed their accuracy check or crashed; the record is written
        raise RuntimeError(f"menagerie run --shard {index}/{count} exited with {code}")
    return out


def train_task(argv: list[str]) -> None:
    """One task of a training job: ``menagerie train ARGV`` (srun started it; the training joins the
    other tasks through SLURM's variables, models/slurm_rendezvous.py)."""
    from menagerie.harness.cli import main

    code = main(["train", *argv])
    if code != 0:
        raise RuntimeError(f"menagerie train {' '.join(argv)} exited with {code}")


def submit_training(
    argv: list[str], nodes: int, tasks_per_node: int, gpus_per_node: int | None, options: SlurmOptions, folder: Path
) -> str:
    """Submits ``menagerie train ARGV`` as one job of ``nodes x tasks_per_node`` processes; its job id."""
    import submitit
    from submitit.core.utils import FailedJobError

    executor = submitit.SlurmExecutor(folder=folder / "submitit")
    executor.update_parameters(
        **_slurm_parameters(options, gpus_per_node=gpus_per_node),
        job_name="menagerie-train",
        nodes=nodes,
        ntasks_per_node=tasks_per_node,
    )
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return executor.submit(train_task, argv).job_id
    except (OSError, FailedJobError) as error:
        raise ClusterError(f"submitting to slurm failed: {_one_line(error)}") from None


def _one_line(error: Exception) -> str:
    """The scheduler client's error, its lines joined (sbatch explains over several)."""
    return "; ".join(line.strip() for line in str(error).strip().splitlines() if line.strip()) or repr(error)


def _executor(kind: str, folder: Path, options: SlurmOptions):
    import submitit

    logs = folder / "submitit"
    if kind == "local":
        executor = submitit.LocalExecutor(folder=logs)
        executor.update_parameters(timeout_min=options.time_min)
        return executor
    executor = submitit.SlurmExecutor(folder=logs)
    executor.update_parameters(**_slurm_parameters(options, gpus_per_task=options.gpus_per_task), job_name="menagerie")
    return executor


def _slurm_parameters(options: SlurmOptions, **gpus) -> dict:
    """submitit's SLURM parameters for ``options`` (and the GPUs asked for, per task or per node), leaving out
    what is not set so that the cluster's defaults apply."""
    wanted = dict(
        partition=options.partition,
        account=options.account,
        constraint=options.constraint,
        cpus_per_task=options.cpus_per_task,
        **gpus,
        mem=None if options.mem_gb is None else f"{int(options.mem_gb * 1024)}M",
    )
    return {"time": options.time_min, **{name: value for name, value in wanted.items() if value is not None}}


@dataclass
class Submission:
    """The manifest of one submitted run (``FOLDER/submission.json``)."""

    folder: Path
    executor: str
    argv: list[str]
    count: int
    options: SlurmOptions
    jobs: dict[int, str] = field(default_factory=dict)  # shard index -> the latest job id that ran it
    submitted: str = ""

    def record_path(self, index: int) -> Path:
        return self.folder / "records" / f"shard-{index}.json"

    def save(self) -> None:
        write_json_atomically(
            {
                "executor": self.executor,
                "argv": self.argv,
                "count": self.count,
                "options": asdict(self.options),
                "jobs": {str(k): v for k, v in self.jobs.items()},
                "submitted": self.submitted,
            },
            self.folder / MANIFEST,
        )

    @classmethod
    def load(cls, where: str | Path) -> Submission:
        """From a folder, or a job id under ``results/cluster/``."""
        folder = Path(where)
        if not (folder / MANIFEST).is_file() and (CLUSTER_DIR / str(where) / MANIFEST).is_file():
            folder = CLUSTER_DIR / str(where)
        try:
            data = json.loads((folder / MANIFEST).read_text())
            return cls(
                folder=folder,
                executor=data["executor"],
                argv=data["argv"],
                count=data["count"],
                options=SlurmOptions(**data["options"]),
                jobs={int(index): job for index, job in data["jobs"].items()},
                submitted=data["submitted"],
            )
        except FileNotFoundError:
            raise ClusterError(f"{where}: no submission there (no {MANIFEST}), nor under {CLUSTER_DIR}/") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ClusterError(f"{folder / MANIFEST}: not a submission manifest ({error})") from None

    def launch(self, indices: list[int]) -> list[str]:
        """Submits the shards ``indices`` as one array; records their job ids; returns them."""
        executor = _executor(self.executor, self.folder, self.options)
        (self.folder / "records").mkdir(parents=True, exist_ok=True)
        from submitit.core.utils import FailedJobError

        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's errors; they go in ours
                jobs = executor.map_array(
                    run_shard,
                    [self.argv] * len(indices),
                    indices,
                    [self.count] * len(indices),
                    [str(self.record_path(index).resolve()) for index in indices],
                )
        except (OSError, FailedJobError) as error:  # no sbatch, or sbatch refused the array
            raise ClusterError(f"submitting to {self.executor} failed: {_one_line(error)}") from None
        for index, job in zip(indices, jobs):
            self.jobs[index] = job.job_id
        self.save()
        return [job.job_id for job in jobs]


def submit(argv: list[str], count: int, executor: str, options: SlurmOptions, folder: Path | None) -> Submission:
    """Submits ``menagerie run ARGV`` as ``count`` shards; the manifest's folder is ``folder`` or
    ``results/cluster/<first job id>``."""
    staging = folder or CLUSTER_DIR / f"staging-{os.getpid()}-{datetime.datetime.now():%Y%m%dT%H%M%S%f}"
    if (staging / MANIFEST).exists():
        raise ClusterError(f"{staging} already holds a submission: collect it, or choose another --folder")
    staging.mkdir(parents=True, exist_ok=True)
    submission = Submission(
        folder=staging,
        executor=executor,
        argv=argv,
        count=count,
        options=options,
        submitted=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    try:
        job_ids = submission.launch(list(range(1, count + 1)))
    except ClusterError:
        shutil.rmtree(staging, ignore_errors=True)  # nothing was submitted: nothing to collect
        raise
    if folder is None:  # named after the array's job id, now that it has one
        final = CLUSTER_DIR / job_ids[0].split("_")[0]
        if final.exists():
            raise ClusterError(
                f"{final} exists already (job ids restart on a fresh cluster): the submission stays in {staging}"
            )
        staging.rename(final)
        submission.folder = final
        submission.save()
    return submission


@dataclass
class ShardState:
    index: int
    state: str  # DONE (a valid record), or the scheduler's word for a shard without one
    detail: str = ""


def shard_states(submission: Submission) -> list[ShardState]:
    """Each shard's state: DONE from its record on disk, else the scheduler's (UNKNOWN past a timeout)."""
    states = []
    for index in range(1, submission.count + 1):
        path = submission.record_path(index)
        if path.is_file():
            try:
                load_run(path)
                states.append(ShardState(index, "DONE"))
                continue
            except ResultError as error:
                states.append(ShardState(index, "BROKEN", str(error)))
                continue
        states.append(ShardState(index, _scheduler_state(submission, index)))
    return states


def _scheduler_state(submission: Submission, index: int) -> str:
    job_id = submission.jobs.get(index)
    if job_id is None:
        return "UNSUBMITTED"
    if submission.executor == "local":
        return _local_state(submission.folder / "submitit", job_id)
    return _slurm_state(job_id)


def _ask(command: list[str]) -> str | None:
    """A scheduler client's output, or None when it fails or does not answer in time."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=STATE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _slurm_state(job_id: str) -> str:
    """A task's state: squeue while it is queued or running, then sacct (where the cluster keeps
    accounting); UNKNOWN when neither knows it."""
    for command in (
        ["squeue", "-h", "-r", "-j", job_id.split("_")[0], "-o", "%i|%T"],
        ["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State"],
    ):
        for line in (_ask(command) or "").splitlines():
            task, _, state = line.partition("|")
            if task.strip() == job_id and state.strip():
                return state.split()[0]  # "CANCELLED by 0" -> CANCELLED
    return "UNKNOWN"


def _local_state(logs: Path, job_id: str) -> str:
    """A local task's state from its process id and submitit's result file."""
    pid = int(job_id.split("_")[0])
    try:  # a child of this process (submitted from it) that ended is reaped here, else it lingers as a zombie
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return "FINISHED" if list(logs.glob(f"{job_id}*_result.pkl")) else "FAILED"
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        return "RUNNING"
    except PermissionError:
        return "RUNNING"
    except ProcessLookupError:
        pass
    return "FINISHED" if list(logs.glob(f"{job_id}*_result.pkl")) else "FAILED"


def failed(states: list[ShardState]) -> list[int]:
    """Shards without a valid record that the scheduler does not report pending or running: the ones
    to resubmit (UNKNOWN included: a task cancelled while pending can vanish from every record)."""
    return [shard.index for shard in states if shard.state != "DONE" and shard.state not in BUSY]
