"""Default ResNet-50 LARS hyperparameters from MLPerf's reference convergence points (RCPs).

The RCP table that ``mlperf-logging`` ships for ruleset 4.0.0
(``mlperf_logging/rcp_checker/training_4.0.0/rcps_resnet.json``) lists, per global batch
size, the LARS hyperparameters that MLPerf's reference runs converged with: 7.4 at batch
1632, 10.5 at 3264, 10 at 4096, 17 at 8192, ... . They do not scale linearly with the
batch (linear scaling from 10.5 at 3264 gives 0.21 at batch 64, which leaves ResNet at
chance), so ``reference_hyperparameters`` interpolates them instead:

- between two table batch sizes: linear interpolation of the base learning rate, the
  warm-up epochs and the schedule length in epochs;
- below the smallest or above the largest table batch size: that row's values (clamped,
  not extrapolated).

The table's ``opt_learning_rate_decay_steps`` spans the whole schedule: 14,523 steps at
batch 3264 are 37.0 epochs of ImageNet's 1,281,167 training images (NVIDIA's 37-epoch
configuration), 27,476 at 1632 are 35.0 epochs; ``schedule_epochs`` is that length.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from importlib import resources

RULESET_FOLDER = "training_4.0.0"
IMAGENET_TRAIN_IMAGES = 1_281_167


@dataclass(frozen=True)
class ReferencePoint:
    """One row of the RCP table: the global batch size and the LARS schedule it converged with."""

    batch_size: int
    base_lr: float
    warmup_epochs: float
    schedule_epochs: float


@dataclass(frozen=True)
class ReferenceHyperparameters:
    """LARS defaults for a global batch size: peak learning rate, warm-up and schedule length (epochs), and the
    table batch sizes they were interpolated between (equal when clamped or exact)."""

    global_batch_size: int
    base_lr: float
    warmup_epochs: float
    schedule_epochs: float
    between: tuple[int, int]

    @property
    def epochs(self) -> int:
        """Whole epochs that cover the schedule."""
        return math.ceil(self.schedule_epochs - 1e-9)


@functools.cache
def reference_points() -> tuple[ReferencePoint, ...]:
    """The ResNet RCP table shipped with mlperf-logging, sorted by batch size."""
    table_file = resources.files("mlperf_logging") / "rcp_checker" / RULESET_FOLDER / "rcps_resnet.json"
    table = json.loads(table_file.read_text())
    points = []
    for row in table.values():
        hyper = row["Hyperparams"]
        if hyper["optimizer"] != "lars":
            continue
        points.append(
            ReferencePoint(
                batch_size=row["BS"],
                base_lr=float(hyper["opt_base_learning_rate"]),
                warmup_epochs=float(hyper["opt_learning_rate_warmup_epochs"]),
                schedule_epochs=hyper["opt_learning_rate_decay_steps"] * row["BS"] / IMAGENET_TRAIN_IMAGES,
            )
        )
    return tuple(sorted(points, key=lambda point: point.batch_size))


def reference_hyperparameters(global_batch_size: int) -> ReferenceHyperparameters:
    """The RCP table's LARS hyperparameters at ``global_batch_size``: linear between rows, clamped outside the table."""
    if global_batch_size < 1:
        raise ValueError(f"global_batch_size must be positive, got {global_batch_size}")
    points = reference_points()
    below = max((p for p in points if p.batch_size <= global_batch_size), key=lambda p: p.batch_size, default=points[0])
    above = min(
        (p for p in points if p.batch_size >= global_batch_size), key=lambda p: p.batch_size, default=points[-1]
    )
    if below.batch_size == above.batch_size:
        weight = 0.0
    else:
        weight = (global_batch_size - below.batch_size) / (above.batch_size - below.batch_size)

    def mix(name: str) -> float:
        return getattr(below, name) + weight * (getattr(above, name) - getattr(below, name))

    return ReferenceHyperparameters(
        global_batch_size,
        round(mix("base_lr"), 3),
        round(mix("warmup_epochs"), 2),
        round(mix("schedule_epochs"), 2),
        (below.batch_size, above.batch_size),
    )
