"""MLPerf Training logging and scoring for ResNet-50 (ruleset 4.0.0, the last with ResNet).

``MLPerfLog`` writes ``:::MLLOG`` lines through the ``mlperf-logging`` package with every
key the resnet compliance rules ask for (submission, cache_clear, init/run start and
stop, blocks of epochs, evaluations with ``epoch_num``, batch size, sample counts and
the LARS or SGD hyperparameters). Only rank 0 writes.

``check_compliance`` runs the package's checker (``--usage training --ruleset 4.0.0``).
``score`` reads a log: time to train (run_start to a successful run_stop), images
trained, img/s overall and per accelerator. ``olympic_mean`` drops the fastest and
slowest runs and averages the rest (MLPerf scores ResNet over 5 runs that way).

Published reference (MLPerf Training v4.0, NVIDIA, 8xH100 SXM, closed division,
ResNet-50 on ImageNet to 75.9% top-1): 13.33 minutes; about 7,160 img/s per H100.
"""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

RULESET = "4.0.0"
CLOSED_TARGET = 0.759
PUBLISHED = {"system": "NVIDIA 8xH100 SXM (MLPerf Training v4.0)", "accelerators": 8, "minutes": 13.33,
             "img_per_s_per_accelerator": 7160.0}
PROCESSES_KEY = "menagerie_processes"  # not an MLPerf key: the number of processes (accelerators) of the run


class LogError(ValueError):
    """A log that is missing or does not describe a finished MLPerf run."""


class MLPerfLog:
    """MLLOG writer to ``path`` (rank 0 only; other ranks' calls do nothing)."""

    def __init__(self, path: str | Path, rank: int = 0):
        from mlperf_logging.mllog import constants
        from mlperf_logging.mllog.mllog import MLLogger

        self.constants = constants
        self.path = Path(path)
        self.enabled = rank == 0
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        logger = logging.getLogger(f"menagerie.mllog.{self.path.resolve()}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        self._handler = logging.FileHandler(self.path, mode="w")
        logger.addHandler(self._handler)
        self._logger = MLLogger(logger=logger, default_stack_offset=2)

    def event(self, key: str, value=None, **metadata) -> None:
        if self.enabled:
            self._logger.event(key=key, value=value, metadata=metadata or None)

    def start(self, key: str, value=None, **metadata) -> None:
        if self.enabled:
            self._logger.start(key=key, value=value, metadata=metadata or None)

    def end(self, key: str, value=None, **metadata) -> None:
        if self.enabled:
            self._logger.end(key=key, value=value, metadata=metadata or None)

    def tracked_throughput(self, epoch: int, images_per_s: float) -> None:
        """One epoch's training throughput, as MLPerf submissions track it (``tracked_stats``, per epoch)."""
        self.event("tracked_stats", {"throughput": images_per_s}, step=epoch)

    def close(self) -> None:
        if self.enabled:
            self._handler.close()

    def submission(self, platform: str, division: str, processes: int) -> None:
        c = self.constants
        self.event(c.SUBMISSION_BENCHMARK, c.RESNET)
        self.event(c.SUBMISSION_ORG, "menagerie")
        self.event(c.SUBMISSION_DIVISION, division)
        self.event(c.SUBMISSION_STATUS, "research")
        self.event(c.SUBMISSION_PLATFORM, platform)
        self.event(PROCESSES_KEY, processes)

    def hyperparameters(self, *, optimizer: str, global_batch_size: int, accumulation: int, base_lr: float, end_lr: float,
                        poly_power: float, decay_steps: int, warmup_epochs: float, momentum: float,
                        weight_decay: float, bn_span: int, train_samples: int, eval_samples: int,
                        seed: int) -> None:
        """The recipe, under the LARS or SGD keys the closed resnet rules require."""
        c = self.constants
        self.event(c.SEED, seed)
        self.event(c.GLOBAL_BATCH_SIZE, global_batch_size)
        self.event(c.GRADIENT_ACCUMULATION_STEPS, accumulation)
        self.event(c.TRAIN_SAMPLES, train_samples)
        self.event(c.EVAL_SAMPLES, eval_samples)
        self.event(c.MODEL_BN_SPAN, bn_span)
        self.event(c.OPT_NAME, optimizer)
        if optimizer == "lars":
            self.event(c.LARS_OPT_BASE_LEARNING_RATE, base_lr)
            self.event(c.LARS_OPT_END_LR, end_lr)
            self.event(c.LARS_OPT_LR_DECAY_POLY_POWER, poly_power)
            self.event(c.LARS_OPT_LR_DECAY_STEPS, decay_steps)
            self.event(c.LARS_EPSILON, 0.0)
            self.event(c.LARS_OPT_LEARNING_RATE_WARMUP_EPOCHS, warmup_epochs)
            self.event(c.LARS_OPT_MOMENTUM, momentum)
            self.event(c.LARS_OPT_WEIGHT_DECAY, weight_decay)
        else:
            self.event("sgd_opt_base_learning_rate", base_lr)
            self.event("sgd_opt_end_learning_rate", end_lr)
            self.event("sgd_opt_learning_rate_decay_poly_power", poly_power)
            self.event("sgd_opt_learning_rate_decay_steps", decay_steps)
            self.event("sgd_opt_weight_decay", weight_decay)
            self.event("sgd_opt_momentum", momentum)
            self.event(c.OPT_LR_WARMUP_EPOCHS, warmup_epochs)


def check_compliance(log: str | Path, output: str | Path) -> tuple[bool, str]:
    """Runs the MLPerf compliance checker (training, ruleset 4.0.0) on ``log``; (passed, the checker's report).

    The report is also written to ``output`` (the checker's ``--log_output``).
    """
    log = Path(log)
    if not log.is_file():
        raise LogError(f"MLPerf log {log} does not exist")
    result = subprocess.run(
        [sys.executable, "-m", "mlperf_logging.compliance_checker", "--usage", "training", "--ruleset", RULESET,
         "--log_output", str(output), str(log)],
        capture_output=True, text=True, timeout=300,
    )
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def read_log(path: str | Path) -> list[dict]:
    """The ``:::MLLOG`` records of a log file, in order."""
    path = Path(path)
    if not path.is_file():
        raise LogError(f"MLPerf log {path} does not exist")
    records = []
    for line in path.read_text(errors="replace").splitlines():
        marker = line.find(":::MLLOG ")
        if marker >= 0:
            try:
                records.append(json.loads(line[marker + len(":::MLLOG "):]))
            except json.JSONDecodeError:
                raise LogError(f"{path}: a :::MLLOG line is not JSON: {line[:120]}") from None
    if not records:
        raise LogError(f"{path} holds no :::MLLOG lines")
    return records


@dataclass(frozen=True)
class Score:
    """One run: ``minutes`` from run_start to run_stop (None unless it reached the target), images trained, rates."""

    log: str
    status: str
    minutes: float | None
    best_accuracy: float
    epochs: int
    images: int
    processes: int
    img_per_s: float
    img_per_s_per_accelerator: float


def score(path: str | Path) -> Score:
    """Time to train and throughput of one log; LogError when it lacks run_start, run_stop or the sample counts."""
    records = read_log(path)

    def first(key):
        found = [record for record in records if record["key"] == key]
        if not found:
            raise LogError(f"{path} has no {key} record: not a complete MLPerf run")
        return found[0]

    run_start, run_stop = first("run_start"), first("run_stop")
    train_samples = first("train_samples")["value"]
    processes = int(first(PROCESSES_KEY)["value"]) if any(r["key"] == PROCESSES_KEY for r in records) else 1
    epochs = max((r["metadata"].get("epoch_num", -1) + 1 for r in records if r["key"] == "epoch_stop"), default=0)
    accuracies = [r["value"] for r in records if r["key"] == "eval_accuracy"]
    seconds = (run_stop["time_ms"] - run_start["time_ms"]) / 1000
    status = run_stop.get("metadata", {}).get("status", "unknown")
    images = epochs * train_samples
    rate = images / seconds if seconds > 0 else 0.0
    return Score(str(path), status, seconds / 60 if status == "success" else None, max(accuracies, default=0.0),
                 epochs, images, processes, rate, rate / processes)


def olympic_mean(minutes: list[float]) -> float:
    """Mean after dropping the fastest and the slowest run (MLPerf's ResNet score over 5 runs); needs at least 3."""
    if len(minutes) < 3:
        raise LogError(f"an olympic mean needs at least 3 successful runs, got {len(minutes)}")
    return statistics.fmean(sorted(minutes)[1:-1])
