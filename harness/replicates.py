"""Process-level replicates: ``menagerie run --repeat N`` runs the same command N times, each in a
fresh process, and merges the N one-replicate records into one.

Why processes: what moves a kernel's time from one run to the next (clocks, memory
placement, autotune picks, the machine's other load) is fixed within a process, so
samples of one process cannot show it. A fresh process per replicate can.

``spawn`` runs the replicates one after another, each ``python -m menagerie.harness.cli ARGV`` with
``REPLICATE_ENV`` naming the file its record goes to; the child's progress goes to the
terminal, its tables are dropped. The records go to a work folder that outlives the command
(``WorkFolder``: a manifest with the command, then ``replicate-K.json``, each written
atomically), so a run that is killed or interrupted keeps every replicate it finished, and
``menagerie run --resume FOLDER`` runs only the missing ones. ``merge`` checks that the records measured the same rows
under the same configuration and builds the merged record: per row, the replicates' samples
in order, ``replicate_medians_s``, ``replicate_sample_counts``, the per-replicate
``calls_per_sample`` and ``autotune``, stats across replicates
(``stats.summarize_replicates``), the worst status (a row that failed in any replicate
failed) with its reason, and the accuracy record of the worst replicate; the record's
``replicates`` lists each one's timestamp, GPU state under load and clock warnings.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from menagerie.harness import runner
from menagerie.harness.results import STATUS_RANK, ResultError, load_run, row_key, write_json_atomically

REPLICATE_ENV = "MENAGERIE_REPLICATE_OUT"


class ReplicateError(RuntimeError):
    """A replicate process failed or its records cannot be merged."""


MANIFEST = "manifest.json"


class WorkFolder:
    """Where the replicates of one ``run --repeat N`` are kept until they are merged: ``manifest.json``
    (the command's arguments, N, the output path, the provenance at the start) and ``replicate-K.json``."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, out: Path, argv: list[str], count: int, provenance: dict) -> WorkFolder:
        parent = out if out.suffix != ".json" else out.parent
        parent.mkdir(parents=True, exist_ok=True)
        folder = cls(Path(tempfile.mkdtemp(prefix=".replicates-", dir=parent)))
        write_json_atomically(
            {"argv": argv, "repeat": count, "out": str(out), "provenance": provenance}, folder.path / MANIFEST
        )
        return folder

    def manifest(self) -> dict:
        """The manifest; ReplicateError naming what to do when it is missing or unreadable."""
        path = self.path / MANIFEST
        try:
            manifest = json.loads(path.read_text())
            if not isinstance(manifest["argv"], list) or int(manifest["repeat"]) < 1:
                raise ValueError("argv or repeat")
            return manifest
        except FileNotFoundError:
            raise ReplicateError(
                f"{self.path} is not a replicate folder of `menagerie run --repeat` (no {MANIFEST})"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ReplicateError(f"{path} cannot be read ({error}); start the run again") from None

    def replicate(self, index: int) -> Path:
        return self.path / f"replicate-{index}.json"

    def recorded(self, count: int) -> list[int]:
        """Indices of the replicates whose record is complete (readable and valid)."""
        done = []
        for index in range(count):
            try:
                load_run(self.replicate(index))
            except ResultError:
                continue
            done.append(index)
        return done


def spawn(argv: list[str], count: int, folder: WorkFolder, on_start: Callable[[int], None] | None = None) -> list[dict]:
    """Runs ``menagerie ARGV`` in fresh processes, one after another, for each replicate that ``folder`` does
    not hold yet; the records of all ``count`` replicates."""
    kept = set(folder.recorded(count))
    for index in range(count):
        if index in kept:
            continue
        if on_start:
            on_start(index)
        out = folder.replicate(index)
        done = subprocess.run(
            [sys.executable, "-m", "menagerie.harness.cli", *argv],
            env={**os.environ, REPLICATE_ENV: str(out)},
            stdout=subprocess.DEVNULL,
            stderr=None,
        )
        if done.returncode < 0 or done.returncode == 130:
            raise KeyboardInterrupt  # the replicate was interrupted (Ctrl-C reaches the whole process group)
        if not out.exists():
            raise ReplicateError(
                f"replicate {index + 1} of {count} exited with code {done.returncode} "
                "without writing its record (its error is above)"
            )
    return [load_run(folder.replicate(index)) for index in range(count)]


def _same(records: list[dict], read: Callable[[dict], object], what: str) -> None:
    values = [read(record) for record in records]
    if any(value != values[0] for value in values):
        raise ReplicateError(f"replicates differ in {what}: {values}")


def _replicate_samples(row: dict) -> list[list[float]]:
    """A row's samples, split by replicate."""
    split, start = [], 0
    for count in row["replicate_sample_counts"]:
        split.append(row["samples_s"][start : start + count])
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
        for field in ("calls_per_sample", "autotune", "throttle"):
            row[field] = [entry for version in versions for entry in version.get(field, [])]
        samples = [taken for version in versions for taken in _replicate_samples(version)]
        if samples and all(samples) and len(samples) == len(merged["replicates"]):
            runner.set_timing(row, samples)
        else:  # not timed in every replicate: no statistic across replicates
            row.update(samples_s=[], replicate_medians_s=[], replicate_sample_counts=[], stats=None)
            row["metrics"].update(tflops=None, gbps=None, gexp_per_s=None, roofline_pct=None)
        row["metrics"]["speedup_vs_reference"] = None
        peaks = [
            version["metrics"]["peak_memory_bytes"]
            for version in versions
            if version["metrics"]["peak_memory_bytes"] is not None
        ]
        row["metrics"]["peak_memory_bytes"] = max(peaks, default=None)
    runner.set_speedups(merged["rows"])
    return merged
