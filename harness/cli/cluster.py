"""``menagerie submit`` and ``menagerie collect``: a sharded run as a SLURM job array (harness/cluster.py)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from menagerie.harness import cluster, shards
from menagerie.harness.cli.common import UsageError, console, errors, positive
from menagerie.harness.results import DEFAULT_RUNS_DIR, load_run, write_run

# `run` options that submit sets for each shard itself.
OWNED = ("--shard", "--out", "--baseline", "--resume", "--repeat")


# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "submit": "submit `menagerie run ...` as N shards, a SLURM job array (submitit)",
    "collect": "show a submitted run's shards; merge them when all are done",
}


def add_parser(commands) -> None:
    submit = commands.add_parser(
        "submit",
        help=COMMANDS["submit"],
        description="Submit `menagerie run ARGS` as N shards, one SLURM array task each (`menagerie collect` "
        "merges them), or `menagerie train ARGS` as one job of nodes x tasks per node processes. "
        "Options not given here come from [tool.menagerie.slurm] in pyproject.toml.",
    )
    submit.add_argument("--shards", type=positive(int), metavar="N", help="run: the number of shards")
    submit.add_argument("--nodes", type=positive(int), default=1, help="train: nodes (default 1)")
    submit.add_argument(
        "--gpus-per-node",
        type=positive(int),
        help="train: GPUs per node, one process each (default: none, processes on CPUs)",
    )
    submit.add_argument(
        "--tasks-per-node", type=positive(int), help="train: processes per node (default: --gpus-per-node, else 1)"
    )
    submit.add_argument(
        "--executor",
        choices=("slurm", "local"),
        default="slurm",
        help="slurm (default), or local: the same path as processes on this machine",
    )
    submit.add_argument("--partition")
    submit.add_argument("--gpus-per-task", type=positive(int))
    submit.add_argument(
        "--time", type=positive(int), dest="time_min", metavar="MINUTES", help="time limit per shard (default 240)"
    )
    submit.add_argument("--account")
    submit.add_argument("--constraint", help="node features, e.g. h100")
    submit.add_argument("--cpus-per-task", type=positive(int))
    submit.add_argument("--mem-gb", type=positive(float))
    submit.add_argument(
        "--folder", type=Path, help="where the manifest, logs and shard records go (default results/cluster/<job id>)"
    )
    submit.add_argument("what", choices=("run", "train"), help="run (sharded) or train (multi-node)")
    submit.add_argument(
        "arguments",
        nargs=argparse.REMAINDER,
        help="the command's arguments (run: names, --size, ...; train: resnet --data ...)",
    )
    submit.set_defaults(func=cmd_submit)

    collect = commands.add_parser("collect", help=COMMANDS["collect"])
    collect.add_argument("job", help="the job id printed by submit, or the submission's folder")
    collect.add_argument("--wait", action="store_true", help="wait until no shard is pending or running")
    collect.add_argument("--timeout", type=positive(float), default=3600.0, help="longest wait, seconds")
    collect.add_argument(
        "--resubmit-failed",
        action="store_true",
        help="resubmit the shards that ended without a record (failed, cancelled, preempted, "
        "out of time, unknown to the scheduler); shards with a record never run again",
    )
    collect.add_argument(
        "--out", type=Path, default=DEFAULT_RUNS_DIR, help="folder (or .json path) for the merged record"
    )
    collect.set_defaults(func=cmd_collect)


def _options(args) -> cluster.SlurmOptions:
    table = cluster.configured_options()
    given = {
        name: getattr(args, name)
        for name in cluster.SlurmOptions.__dataclass_fields__
        if getattr(args, name) is not None
    }
    return cluster.SlurmOptions(**{**table, **given})


def cmd_submit(args) -> int:
    if args.what == "train":
        return submit_training(args)
    if args.shards is None:
        raise UsageError("submit run needs --shards N")
    owned = [argument for argument in args.arguments if argument.split("=")[0] in OWNED]
    if owned:
        raise UsageError(f"submit sets {', '.join(OWNED)} for each shard itself; drop {owned[0]}")
    from menagerie.harness.cli import build_parser

    build_parser(["run"]).parse_args(["run", *args.arguments])  # they must parse before anything is submitted (exit 2)
    try:
        submission = cluster.submit(list(args.arguments), args.shards, args.executor, _options(args), args.folder)
    except cluster.ClusterError as error:
        raise UsageError(str(error)) from None
    job = submission.jobs[1].split("_")[0]
    console.print(
        f"submitted {args.shards} shard(s) of `menagerie run {' '.join(args.arguments)}` as job {job} ({args.executor})"
    )
    console.print(
        f"records: {submission.folder / 'records'}/shard-K.json; collect with: menagerie collect {submission.folder}"
    )
    return 0


def submit_training(args) -> int:
    """``submit train ...``: one job, ``--nodes`` x tasks per node processes, each running the training."""
    if args.shards is not None:
        raise UsageError("--shards is for `submit run`; training splits its batches over processes")
    if args.executor == "local":
        raise UsageError("submit train runs on SLURM; on this machine use torchrun (docs/resnet.md)")
    from menagerie.harness.cli import build_parser

    build_parser(["train"]).parse_args(
        ["train", *args.arguments]
    )  # they must parse before anything is submitted (exit 2)
    tasks = args.tasks_per_node or args.gpus_per_node or 1
    folder = args.folder or cluster.CLUSTER_DIR / "train"
    try:
        job = cluster.submit_training(
            list(args.arguments), args.nodes, tasks, args.gpus_per_node, _options(args), folder
        )
    except cluster.ClusterError as error:
        raise UsageError(str(error)) from None
    console.print(
        f"submitted `menagerie train {' '.join(args.arguments)}` as job {job}: {args.nodes} node(s) x "
        f"{tasks} process(es)"
    )
    console.print(
        f"logs: {folder / 'submitit'}/{job}_*; the run record and MLPerf log go where the training's "
        "--out says (rank 0 writes them)"
    )
    return 0


def cmd_collect(args) -> int:
    try:
        submission = cluster.Submission.load(args.job)
    except cluster.ClusterError as error:
        raise UsageError(str(error)) from None
    states = _watch(submission, args.wait, args.timeout)
    waiting = [shard for shard in states if shard.state in cluster.BUSY]
    missing = cluster.failed(states)
    for shard in states:
        if shard.state != "DONE":
            console.print(
                f"shard {shard.index}/{submission.count}: {shard.state}"
                f" (job {submission.jobs.get(shard.index, '-')}){' ' + shard.detail if shard.detail else ''}"
            )
    if missing and args.resubmit_failed:
        try:
            job_ids = submission.launch(missing)
        except cluster.ClusterError as error:
            raise UsageError(str(error)) from None
        console.print(
            f"resubmitted shard(s) {', '.join(map(str, missing))} as {', '.join(job_ids)}; "
            f"collect again with: menagerie collect {submission.folder}"
        )
        return 0
    if waiting or missing:
        errors.print(
            f"{len(states) - len(waiting) - len(missing)} of {submission.count} shards done; "
            f"{len(waiting)} pending or running, {len(missing)} ended without a record"
            + (" (--resubmit-failed runs them again)" if missing else ""),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return 1
    records = [load_run(submission.record_path(index)) for index in range(1, submission.count + 1)]
    try:
        merged = shards.merge(records)
    except shards.ShardError as error:
        raise UsageError(str(error)) from None
    console.print(f"all {submission.count} shards done: {len(merged['rows'])} rows")
    console.print(f"wrote {write_run(merged, args.out)}")
    return 0


def _watch(submission: cluster.Submission, wait: bool, timeout: float) -> list[cluster.ShardState]:
    """The shards' states, polled with a progress bar until none is pending or running (``wait``) or
    the timeout has passed."""
    started = time.monotonic()
    with Progress(
        TextColumn("shards done"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=errors,
        transient=True,
    ) as progress:
        bar = progress.add_task("", total=submission.count)
        while True:
            states = cluster.shard_states(submission)
            done = sum(shard.state == "DONE" for shard in states)
            busy = [shard for shard in states if shard.state in cluster.BUSY]
            progress.update(bar, completed=done, description=f"{len(busy)} pending or running")
            if not wait or not busy or time.monotonic() - started > timeout:
                return states
            time.sleep(2.0)
