"""MLPerf Training logging and scoring for ResNet-50 (ruleset 4.0.0, the last with ResNet).

``MLPerfLog`` writes ``:::MLLOG`` lines through the ``mlperf-logging`` package with every
key the resnet compliance rules ask for (submission, cache_clear, init/run start and
stop, blocks of epochs, evaluations with ``epoch_num``, batch size, sample counts and
the LARS or SGD hyperparameters, per-epoch ``tracked_stats`` throughput). Only rank 0 writes.

Scoring, as the MLPerf Training rules score ResNet: ``check_compliance`` runs the package's
compliance checker on one log (``--usage training --ruleset 4.0.0``); ``score`` reads one
run (time to train from run_start to a successful run_stop; img/s end to end, and the median
of the per-epoch tracked throughput, which is what MLPerf reports); ``olympic_mean`` scores a
set of exactly 5 runs, a failed run counting as the slowest and more than one failure making
the set invalid; ``check_rcp`` runs the package's reference-convergence-point checker on a
set; ``PUBLISHED`` holds NVIDIA's MLPerf Training v4.0 results to compare with, per device.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

RULESET = "4.0.0"
CLOSED_TARGET = 0.759
SET_SIZE = 5  # runs in a scored ResNet set
IMAGENET_TRAIN_IMAGES = 1_281_167
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

    def hyperparameters(
        self,
        *,
        optimizer: str,
        global_batch_size: int,
        accumulation: int,
        base_lr: float,
        end_lr: float,
        poly_power: float,
        decay_steps: int,
        warmup_epochs: float,
        momentum: float,
        weight_decay: float,
        bn_span: int,
        train_samples: int,
        eval_samples: int,
        seed: int,
    ) -> None:
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
        [
            sys.executable,
            "-m",
            "mlperf_logging.compliance_checker",
            "--usage",
            "training",
            "--ruleset",
            RULESET,
            "--log_output",
            str(output),
            str(log),
        ],
        capture_output=True,
        text=True,
        timeout=300,
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
                records.append(json.loads(line[marker + len(":::MLLOG ") :]))
            except json.JSONDecodeError:
                raise LogError(f"{path}: a :::MLLOG line is not JSON: {line[:120]}") from None
    if not records:
        raise LogError(f"{path} holds no :::MLLOG lines")
    return records


@dataclass(frozen=True)
class Score:
    """One run.

    ``minutes``: run_start to run_stop, None unless run_stop says ``success`` (the target was reached).
    ``img_per_s``: end to end, the images of the trained epochs over run_start to run_stop (evaluation
    included), all accelerators together. ``tracked_img_per_s``: the median over epochs of the
    ``tracked_stats`` throughput (MLPerf's reported throughput), None when the log has none.
    The ``_per_accelerator`` values divide by the run's processes.
    """

    log: str
    status: str
    minutes: float | None
    best_accuracy: float
    epochs: int
    images: int
    processes: int
    platform: str
    global_batch_size: int | None
    train_samples: int
    img_per_s: float
    img_per_s_per_accelerator: float
    tracked_img_per_s: float | None
    tracked_img_per_s_per_accelerator: float | None


def tracked_throughputs(records: list[dict]) -> list[float]:
    """The per-epoch throughputs of the ``tracked_stats`` records (value ``{"throughput": img/s}``), in log order."""
    return [
        float(r["value"]["throughput"])
        for r in records
        if r["key"] == "tracked_stats" and isinstance(r.get("value"), dict) and "throughput" in r["value"]
    ]


def _value(records: list[dict], key: str, default=None):
    """The value of the first ``key`` record, or ``default`` when there is none."""
    return next((r["value"] for r in records if r["key"] == key), default)


def score(path: str | Path) -> Score:
    """Time to train and throughput of one log; LogError when it lacks run_start, run_stop or train_samples."""
    records = read_log(path)

    def first(key):
        found = [record for record in records if record["key"] == key]
        if not found:
            raise LogError(f"{path} has no {key} record: not a complete MLPerf run")
        return found[0]

    run_start, run_stop = first("run_start"), first("run_stop")
    train_samples = int(first("train_samples")["value"])
    processes = int(_value(records, PROCESSES_KEY, 1))
    epochs = max((r["metadata"].get("epoch_num", -1) + 1 for r in records if r["key"] == "epoch_stop"), default=0)
    accuracies = [r["value"] for r in records if r["key"] == "eval_accuracy"]
    seconds = (run_stop["time_ms"] - run_start["time_ms"]) / 1000
    status = (run_stop.get("metadata") or {}).get("status", "unknown")
    images = epochs * train_samples
    rate = images / seconds if seconds > 0 else 0.0
    per_epoch = tracked_throughputs(records)
    tracked = statistics.median(per_epoch) if per_epoch else None
    batch = _value(records, "global_batch_size")
    return Score(
        str(path),
        status,
        seconds / 60 if status == "success" else None,
        max(accuracies, default=0.0),
        epochs,
        images,
        processes,
        str(_value(records, "submission_platform", "")),
        None if batch is None else int(batch),
        train_samples,
        rate,
        rate / processes,
        tracked,
        None if tracked is None else tracked / processes,
    )


class InvalidSetError(LogError):
    """A set of runs the MLPerf rules do not score (not 5 runs, or more than one failure)."""


def is_failure(minutes: float | None) -> bool:
    """A run that did not reach the target (or failed its compliance check): None or inf minutes."""
    return minutes is None or math.isinf(minutes)


def set_problem(minutes: list[float | None]) -> str | None:
    """Why a set of run times is not a valid MLPerf ResNet set (None when it is valid).

    Valid: exactly 5 runs with at most one failure (``is_failure``).
    """
    if len(minutes) != SET_SIZE:
        return f"the rules score ResNet over exactly {SET_SIZE} runs, got {len(minutes)}"
    failures = sum(is_failure(m) for m in minutes)
    if failures > 1:
        return f"{failures} of the {SET_SIZE} runs failed; the rules allow at most one"
    return None


def olympic_mean(minutes: list[float | None]) -> float:
    """MLPerf's ResNet score of a set: the 5 run times (minutes), a failure given as None or inf.

    The fastest and the slowest run are dropped and the other 3 averaged. A failure counts as the
    slowest run, so with one failure the mean is over the 3 slowest of the 4 successful runs.
    InvalidSetError (naming the reason) when ``set_problem`` finds the set invalid.
    """
    problem = set_problem(minutes)
    if problem:
        raise InvalidSetError(problem)
    ordered = sorted(math.inf if is_failure(m) else m for m in minutes)
    return statistics.fmean(ordered[1:-1])


def median_or_none(values: list[float | None]) -> float | None:
    """The median of the values that are not None; None when there are none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


@dataclass(frozen=True)
class Anchor:
    """A published MLPerf Training result to compare with: time to train and MLPerf's tracked throughput."""

    device: str
    system: str
    accelerators: int
    global_batch_size: int
    minutes: float
    minutes_range: tuple[float, float]
    img_per_s_per_accelerator: float
    source: str


_V40 = "MLPerf Training v4.0, closed division, NVIDIA, ResNet-50 to 75.9% top-1; mlcommons/training_results_v4.0"
PUBLISHED = {
    "h100": Anchor(
        "h100",
        "NVIDIA 8xH100-SXM5-80GB (DGX H100)",
        8,
        3200,
        13.27,
        (13.19, 13.32),
        7161.0,
        f"{_V40} NVIDIA/results/eos_ngc24.04_mxnet/resnet/result_0-4.txt: olympic mean of the five runs; "
        "throughput: median over runs of each run's median tracked_stats throughput, / 8",
    ),
    "h200": Anchor(
        "h200",
        "NVIDIA 8xH200-SXM5-141GB (HGX H200)",
        8,
        3200,
        12.03,
        (12.02, 12.04),
        7950.0,
        f"{_V40} NVIDIA/results/h200_ngc24.04_mxnet/resnet/result_0-4.txt: olympic mean of the five runs; "
        "throughput: median over runs of each run's median tracked_stats throughput, / 8",
    ),
}


def choose_anchor(platforms: list[str], override: str | None = None) -> tuple[Anchor, str]:
    """The anchor for logs from ``platforms`` (their submission_platform values) and why it was chosen.

    ``override`` (a ``PUBLISHED`` key) wins; else H200 when every platform names an H200, else H100.
    """
    if override is not None:
        if override not in PUBLISHED:
            raise ValueError(f"anchor must be one of {', '.join(PUBLISHED)}, got {override!r}")
        return PUBLISHED[override], f"chosen with --anchor {override}"
    named = ", ".join(sorted(set(platforms))) or "none"
    if platforms and all("h200" in platform.lower() for platform in platforms):
        return PUBLISHED["h200"], f"the logs' platform names an H200 ({named})"
    if platforms and all("h100" in platform.lower() for platform in platforms):
        return PUBLISHED["h100"], f"the logs' platform names an H100 ({named})"
    return PUBLISHED["h100"], f"H100 by default: the logs' platform ({named}) names no H100 or H200"


@dataclass(frozen=True)
class RCPResult:
    """The RCP checker's verdict on a set: ``status`` is passed, failed, not applicable or crashed."""

    status: str
    message: str


def _rcp_verdict(output: str) -> str | None:
    """The checker's final message (before ", RCP test PASSED/FAILED"), None when it printed none."""
    for line in reversed(output.splitlines()):
        for verdict in (", RCP test PASSED", ", RCP test FAILED"):
            if verdict in line:
                return line.split(verdict)[0].split(" - ", 1)[-1].strip()
    return None


def _rcp_not_applicable(scores: list[Score], verdict: str) -> str | None:
    """Why the RCPs do not apply to this set (None when they do): not ImageNet, or no RCP for the batch size."""
    sizes = sorted({s.train_samples for s in scores})
    if sizes != [IMAGENET_TRAIN_IMAGES]:
        return f"not ImageNet-1k training (train_samples {', '.join(map(str, sizes))}, not {IMAGENET_TRAIN_IMAGES})"
    if verdict.startswith(("Missing RCP", "Cannot find any RCPs")):
        return f"no RCP for global batch size {scores[0].global_batch_size}"
    return None


def check_rcp(logs: list[str | Path], scores: list[Score], output: str | Path) -> RCPResult:
    """Runs ``mlperf_logging.rcp_checker`` (training, ruleset 4.0.0, pruned RCPs) on the set of ``logs``.

    The checker reads ``result_*.txt`` from one folder: the logs are copied into a temporary one.
    Its log goes to ``output``. A checker that crashes or prints no verdict gives ``crashed`` with
    the end of its output; a verdict on a set the RCPs do not cover (``_rcp_not_applicable``) gives
    ``not applicable`` with the checker's message.
    """
    with tempfile.TemporaryDirectory(prefix="menagerie-rcp-") as folder:
        for index, log in enumerate(logs):
            shutil.copyfile(log, Path(folder) / f"result_{index}.txt")
        try:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mlperf_logging.rcp_checker",
                    folder,
                    "--rcp_usage",
                    "training",
                    "--rcp_version",
                    RULESET,
                    "--rcp_pass",
                    "pruned_rcps",
                    "--log_output",
                    str(output),
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            return RCPResult("crashed", "the RCP checker ran past 300 s")
    output_text = (result.stdout + result.stderr).strip()
    verdict = _rcp_verdict(output_text)
    if verdict is None or result.returncode not in (0, 1):
        tail = " | ".join(output_text.splitlines()[-3:]) or "no output"
        return RCPResult("crashed", f"the RCP checker exited with {result.returncode}: {tail}")
    not_applicable = _rcp_not_applicable(scores, verdict)
    if not_applicable:
        return RCPResult("not applicable", f"{not_applicable}; the checker says: {verdict}")
    return RCPResult("passed" if result.returncode == 0 else "failed", verdict)
