"""Shards of a suite: a deterministic split of a run's rows into N parts of about equal time.

A shard holds whole (benchmark, case) groups, never part of one, so every row of a case runs
in one process against one reference. The split is a function of the planned tasks and N alone
(no measured number enters it), so N processes on N machines that plan the same run agree on
it: no row is dropped or run twice. Groups are weighed by the time the harness expects to
spend on them, the same on every machine: per implementation row, the warm-up and measuring
budget, plus the cost model's roofline time on a nominal GPU for the timed calls and the
accuracy calls. Heaviest groups first, each goes to the least loaded shard (ties to the lower
shard), so the shards take about the same time.

A shard's record says which shard it is (``config.shard``: index from 1, count, and the groups
it ran with their positions in the whole run's plan), which lets ``merge`` put the rows of all
shards back in the order of an unsharded run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A nominal GPU for weighing rows against each other (not for any reported number): only the
# ratios between groups matter, and every machine must get the same ones.
NOMINAL_FLOPS = 400e12
NOMINAL_BYTES_PER_S = 3e12
NOMINAL_EXP_PER_S = 4e12
TIMED_CALLS = 50  # calls a row makes at its roofline time beyond its fixed budget, roughly


@dataclass(frozen=True)
class Shard:
    index: int  # from 1
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"K/N"`` with ``1 <= K <= N``; ValueError naming what is wrong."""
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not found:
        raise ValueError(f"expected K/N, e.g. 2/8 (shard 2 of 8), got {text!r}")
    index, count = int(found[1]), int(found[2])
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"expected 1 <= K <= N in K/N, got {text!r}")
    return Shard(index, count)


def group_of(task) -> tuple[str, str]:
    return task.benchmark.name, task.case.name


def expected_seconds(task, budget) -> float:
    """What the harness expects to spend on a task, on the nominal GPU (see the module docstring)."""
    fixed = budget.warmup_s + budget.measure_s
    cost = task.benchmark.cost(task.case, task.mode, task.dtype)
    roofline = max(cost.flops / NOMINAL_FLOPS, cost.bytes / NOMINAL_BYTES_PER_S, cost.exp / NOMINAL_EXP_PER_S)
    return len(task.impls) * (fixed + TIMED_CALLS * roofline)


def assign(tasks: list, count: int, budget) -> dict[tuple[str, str], int]:
    """The shard (from 1) of each (benchmark, case) group of ``tasks``."""
    weights: dict[tuple[str, str], float] = {}
    for task in tasks:
        weights[group_of(task)] = weights.get(group_of(task), 0.0) + expected_seconds(task, budget)
    loads = [0.0] * count
    shards = {}
    for group in sorted(weights, key=lambda group: (-round(weights[group], 9), group)):
        lightest = min(range(count), key=lambda index: (loads[index], index))
        shards[group] = lightest + 1
        loads[lightest] += weights[group]
    return shards


def select(tasks: list, shard: Shard, budget) -> tuple[list, list[list]]:
    """The tasks of ``shard`` and its groups as ``[position in the plan, benchmark, case]``."""
    shards = assign(tasks, shard.count, budget)
    positions = {group: position for position, group in enumerate(dict.fromkeys(map(group_of, tasks)))}
    mine = [task for task in tasks if shards[group_of(task)] == shard.index]
    groups = [[positions[group], *group] for group in dict.fromkeys(map(group_of, mine))]
    return mine, groups


class ShardError(ValueError):
    """Shard records that cannot be merged: the message names the shard or the difference."""


def _without_shard(config: dict) -> dict:
    return {key: value for key, value in config.items() if key != "shard"}


def merge(records: list[dict], allow_partial: bool = False) -> dict:
    """One run record of the shard records of one run, rows in the order of an unsharded run.

    The records must come from the same commit, configuration and device; each shard of the run
    must be there exactly once, or, with ``allow_partial``, at most once (the record then says
    which are missing and is marked partial)."""
    if not records:
        raise ShardError("no shard records to merge")
    unsharded = [record for record in records if "shard" not in record["config"]]
    if unsharded:
        raise ShardError(f"{len(unsharded)} of the records are not shards (run without --shard)")
    first = records[0]
    for what, read in (
        ("commit", lambda record: record["provenance"]["git"]["sha"]),
        ("device", lambda record: record["provenance"]["device"]),
        ("configuration", lambda record: _without_shard(record["config"])),
        ("number of shards", lambda record: record["config"]["shard"]["count"]),
    ):
        values = [read(record) for record in records]
        if any(value != values[0] for value in values):
            different = next(record for record, value in zip(records, values) if value != values[0])
            raise ShardError(
                f"the shards differ in {what}: shard {_label(first)} has {values[0]!r}, "
                f"shard {_label(different)} {read(different)!r}"
            )
    count = first["config"]["shard"]["count"]
    by_index: dict[int, dict] = {}
    for record in records:
        index = record["config"]["shard"]["index"]
        if index in by_index:
            raise ShardError(f"shard {index}/{count} is there twice")
        by_index[index] = record
    missing = [index for index in range(1, count + 1) if index not in by_index]
    if missing and not allow_partial:
        raise ShardError(
            f"shard{'s' if len(missing) > 1 else ''} {', '.join(f'{i}/{count}' for i in missing)} "
            "missing (--allow-partial merges the others and marks the record partial)"
        )
    ordered = [by_index[index] for index in sorted(by_index)]
    positions = {
        (bench, case): position for record in ordered for position, bench, case in record["config"]["shard"]["groups"]
    }
    rows = sorted(
        (row for record in ordered for row in record["rows"]), key=lambda row: positions[row["benchmark"], row["case"]]
    )  # stable: a group's own order stays
    config = {
        **_without_shard(first["config"]),
        "merged_shards": {"count": count, "merged": sorted(by_index), "missing": missing},
    }
    if missing:
        config["partial"] = True
    ceilings = {}
    for record in ordered:
        for dtype, found in record["ceilings"].items():
            ceilings.setdefault(dtype, found)
    replicates = []
    for entries in zip(*(record.get("replicates", []) for record in ordered)):
        replicates.append(
            {
                "timestamp": min(entry["timestamp"] for entry in entries),
                "gpu_under_load": next((entry["gpu_under_load"] for entry in entries if entry["gpu_under_load"]), None),
                "warnings": [
                    f"shard {index}: {warning}"
                    for index, entry in zip(sorted(by_index), entries)
                    for warning in entry["warnings"]
                ],
            }
        )
    return {**first, "config": config, "ceilings": ceilings, "replicates": replicates, "rows": rows}


def _label(record: dict) -> str:
    shard = record["config"]["shard"]
    return f"{shard['index']}/{shard['count']}"
