"""Synthetic run histories: records shaped like a committed CPU run, with chosen commits, devices and medians.

Each record is a copy of a real ``results/history/cpu-tiny`` record with its provenance, device and
rows replaced: ``rows`` rows over benchmarks ``bench0..``, three implementations each (the
reference first), two process-level replicates a row (schema 2), medians of ``base_s * scale`` with a little
seeded noise. Used by the site's tests and its build benchmark.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = sorted((ROOT / "results" / "history" / "cpu-tiny").glob("*.json"))[0]
IMPLS = (("torch", "reference"), ("triton", "variant"), ("peer", "peer"))


def synthetic_run(
    index: int, *, device: str = "Synthetic GPU", rows: int = 18, benchmarks: int = 3, scale: float = 1.0, seed: int = 0
) -> dict:
    """Run ``index`` of a history (its sha and timestamp follow from ``index``)."""
    record = json.loads(TEMPLATE.read_text())
    template_row = record["rows"][0]
    rng = random.Random(f"{seed}:{index}:{device}")
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    record["provenance"].update(
        timestamp=(start + timedelta(hours=index)).isoformat(timespec="seconds"),
        device=device,
        git={"sha": f"{index:08x}" + "a" * 32, "dirty": False, "message": f"synthetic commit {index}"},
    )
    record["schema_version"] = 2  # the gate reads each row's replicate medians
    record["config"]["repeat"] = 2
    made = []
    for number in range(rows):
        impl, role = IMPLS[number % len(IMPLS)]
        row = dict(template_row)  # shallow: the fields replaced below are new objects, the rest is only dumped
        group = number // len(IMPLS)
        base = 1e-4 * (1 + group % 7) * (1.0 if role == "reference" else 0.6)
        medians = [base * scale * (1 + rng.gauss(0, 0.01)) for _ in range(2)]
        row.update(
            benchmark=f"synthetic.bench{group % benchmarks}",
            case=f"case{group // benchmarks}",
            impl=impl,
            role=role,
            dtype="float32",
            mode="fwd",
            samples_s=medians,
            replicate_medians_s=medians,
            replicate_sample_counts=[1, 1],
            calls_per_sample=[1, 1],
        )
        row["stats"] = {**row["stats"], "median_s": sorted(medians)[0], "replicates": 2}
        made.append(row)
    record["rows"] = made
    return record


def write_history(folder: Path, runs: int, **options) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(runs):
        path = folder / f"run{index:05d}-{options.get('device', 'synthetic').replace(' ', '-')}.json"
        path.write_text(json.dumps(synthetic_run(index, **options)))
        paths.append(path)
    return paths
