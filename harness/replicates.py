"""Process-level replicates: ``menagerie run --repeat N`` runs the same command N times, each in a
fresh process, and merges the N one-replicate records into one.

Why processes: what moves a kernel's time from one run to the next (clocks, memory
placement, autotune picks, the machine's other load) is fixed within a process, so
samples of one process cannot show it. A fresh process per replicate can.

``spawn`` runs the replicates one after another, each ``python -m menagerie.harness.cli ARGV`` with
``REPLICATE_ENV`` naming the file its record goes to; the child's progress goes to the
terminal, its tables are dropped. ``merge`` checks that the records measured the same rows
under the same configuration and builds the merged record: per row, the replicates' samples
in order, ``replicate_medians_s``, ``replicate_sample_counts``, the per-replicate
``calls_per_sample`` and ``autotune``, stats across replicates
(``stats.summarize_replicates``), the worst status (a row that failed in any replicate
failed) with its reason, and the accuracy record of the worst replicate; the record's
``replicates`` lists each one's timestamp, GPU state under load and clock warnings.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from menagerie.harness import runner
from menagerie.harness.results import load_run, row_key

REPLICATE_ENV = "MENAGERIE_REPLICATE_OUT"
STATUS_RANK = {"ok": 0, "skipped": 1, "accuracy_failed": 2, "error": 3}


class ReplicateError(RuntimeError):
    """A replicate process failed or its records cannot be merged."""


def spawn(argv: list[str], count: int, on_start: Callable[[int], None] | None = None) -> list[dict]:
    """Runs ``menagerie ARGV`` in ``count`` fresh processes, one after another; their records."""
    records = []
    with tempfile.TemporaryDirectory(prefix="menagerie-replicates-") as folder:
        for index in range(count):
            if on_start:
                on_start(index)
            out = Path(folder) / f"replicate-{index}.json"
            done = subprocess.run([sys.executable, "-m", "menagerie.harness.cli", *argv], env={**os.environ, REPLICATE_ENV: str(out)},
                                  stdout=subprocess.DEVNULL, stderr=None)
            if not out.exists():
                raise ReplicateError(f"replicate {index + 1} of {count} exited with code {done.returncode} "
                                     "without writing its record (its error is above)")
            records.append(load_run(out))
    return records


def _same(records: list[dict], read: Callable[[dict], object], what: str) -> None:
    values = [read(record) for record in records]
    if any(value != values[0] for value in values):
        raise ReplicateError(f"replicates differ in {what}: {values}")


def _replicate_samples(row: dict) -> list[list[float]]:
    """A row's samples, split by replicate."""
    split, start = [], 0
    for count in row["replicate_sample_counts"]:
        split.append(row["samples_s"][start:start + count])
        start += count
    return split


def merge(records: list[dict], provenance: dict) -> dict:
    """One record of the replicates in ``records`` (each with one or more replicates of its own)."""
    if not records:
        raise ReplicateError("no replicate records to merge")
    config_without_repeat = lambda record: {k: v for k, v in record["config"].items() if k != "repeat"}  # noqa: E731
    _same(records, config_without_repeat, "configuration")
    _same(records, lambda record: record["provenance"]["device"], "device")
    _same(records, lambda record: [row_key(row) for row in record["rows"]], "rows")
    merged = copy.deepcopy(records[0])
    merged["provenance"] = provenance
    merged["replicates"] = [replicate for record in records for replicate in record["replicates"]]
    merged["config"]["repeat"] = len(merged["replicates"])
    for index, row in enumerate(merged["rows"]):
        versions = [record["rows"][index] for record in records]
        worst = max(versions, key=lambda version: STATUS_RANK[version["status"]])
        row.update(status=worst["status"], reason=worst["reason"])
        checked = [version["accuracy"] for version in versions if version["accuracy"]]
        row["accuracy"] = min(checked, key=lambda found: (found["passed"], -found["max_abs_err"]), default=None)
        for field in ("calls_per_sample", "autotune"):
            row[field] = [entry for version in versions for entry in version[field]]
        samples = [taken for version in versions for taken in _replicate_samples(version)]
        if samples and all(samples) and len(samples) == len(merged["replicates"]):
            runner.set_timing(row, samples)
        else:  # not timed in every replicate: no statistic across replicates
            row.update(samples_s=[], replicate_medians_s=[], replicate_sample_counts=[], stats=None)
            row["metrics"].update(tflops=None, gbps=None, gexp_per_s=None, roofline_pct=None)
        row["metrics"]["speedup_vs_reference"] = None
        peaks = [version["metrics"]["peak_memory_bytes"] for version in versions
                 if version["metrics"]["peak_memory_bytes"] is not None]
        row["metrics"]["peak_memory_bytes"] = max(peaks, default=None)
    runner.set_speedups(merged["rows"])
    return merged
