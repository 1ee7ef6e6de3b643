"""ResNet training with the MLPerf Training recipe, single process or DDP under ``torchrun``.

The recipe (MLPerf ResNet-50 v1.5): LARS (or SGD with momentum), linear warm-up then
polynomial decay (power 2) to 1e-4, cross-entropy with label smoothing 0.1, no weight
decay (and no LARS trust ratio) on BatchNorm parameters and biases, evaluation on the
whole validation set every ``eval_every`` epochs from ``eval_offset`` (and after the last
epoch), stopping when top-1 reaches ``target`` (0.759 for ImageNet). Unset LARS
hyperparameters come from MLPerf's reference convergence points for the global batch
(``menagerie.models.rcp``).

Division: a run is logged in MLPerf's closed division only when every closed rule this
code can check holds (``division``): ResNet-50 v1.5 on an ImageNet-sized dataset, the
rules' hyperparameters, evaluation every 4 epochs, and a page cache actually dropped
before the run (``drop_caches``, root only). Otherwise it is open, and the reasons are
announced before training and kept in the run record.

Two modes: ``optimized`` (channels_last, bf16 autocast on a GPU, optional
``torch.compile``) and ``reference`` (eager, float32, NCHW: the plain loop the
optimized one is compared with).

Distributed: launched by ``torchrun`` (``WORLD_SIZE`` > 1) or by SLURM's ``srun`` (one task per
process, ``models/slurm_rendezvous.py``), each process trains a shard
of every batch under DistributedDataParallel (NCCL on GPUs, gloo on the CPU);
BatchNorm statistics are per process (MLPerf's ``model_bn_span``). ``accumulation``
splits each process's batch into interleaved micro-batches whose gradients are summed
before the step, so one process with ``batch_size = W*b, accumulation = W`` computes the
same steps as W processes with ``batch_size = b``.

Data root layout: ``DATA/train`` and ``DATA/val`` image folders (torchvision, DALI) or
``DATA/train.beton`` and ``DATA/val.beton`` (FFCV).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from menagerie.models import mlperf, rcp
from menagerie.models.data.folders import scan_imagefolder
from menagerie.models.data.loaders import LOADERS, Loader, make_loader
from menagerie.models.resnet import ARCHS, build
from menagerie.models.slurm_rendezvous import join_slurm_rendezvous

MODES = ("optimized", "reference")
OPTIMIZERS = ("lars", "sgd")
END_LR = 1e-4
POLY_POWER = 2
LARS_ETA = 0.001
SGD_LR_PER_IMAGE = 0.1 / 256
SGD_DEFAULTS = dict(warmup_epochs=2.0, epochs=40)
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
IMAGENET_CLASSES = 1000
IMAGENET_EVAL_IMAGES = 50_000
CLOSED_EVAL_EVERY = 4
CLOSED_LABEL_SMOOTHING = 0.1
CLOSED_IMAGE_SIZE = 224
CLOSED_MIN_SCALE = 0.08


@dataclass
class TrainConfig:
    """What to train and how; ``lr``, ``warmup_epochs`` and ``epochs`` left ``None`` take the optimizer's defaults
    for the global batch (``with_defaults``)."""

    data: Path
    arch: str = "resnet50"
    loader: str = "dali"
    epochs: int | None = None
    batch_size: int = 256  # per process
    accumulation: int = 1
    optimizer: str = "lars"
    lr: float | None = None
    warmup_epochs: float | None = None
    momentum: float = 0.9
    weight_decay: float = 5e-5
    label_smoothing: float = 0.1
    eval_every: int = CLOSED_EVAL_EVERY
    eval_offset: int = 0
    target: float = mlperf.CLOSED_TARGET
    image_size: int = 224
    min_scale: float = 0.08
    augment: bool = True
    workers: int = 4
    seed: int = 0
    mode: str = "optimized"
    compile: bool = False
    mllog: Path | None = None

    def check(self) -> None:
        """ValueError naming the first bad setting (unset defaults are not checked)."""
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; expected one of {', '.join(ARCHS)}")
        if self.loader not in LOADERS:
            raise ValueError(f"unknown loader {self.loader!r}; expected one of {', '.join(LOADERS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {', '.join(MODES)}")
        for name in ("epochs", "batch_size", "accumulation", "eval_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.eval_offset < self.eval_every:
            raise ValueError(
                f"eval_offset must be in 0..{self.eval_every - 1} (evaluations after epochs offset, "
                f"offset + {self.eval_every}, ...; 0 means after {self.eval_every}), "
                f"got {self.eval_offset}"
            )
        if self.batch_size % self.accumulation:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of accumulation {self.accumulation}")
        if not 0 < self.target <= 1:
            raise ValueError(f"target top-1 must be in (0, 1], got {self.target}")
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must not be negative, got {self.warmup_epochs}")
        if None not in (self.warmup_epochs, self.epochs) and self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={self.epochs}), got {self.warmup_epochs}")
        if self.mode == "reference" and self.compile:
            raise ValueError("the reference mode is eager: it cannot be combined with compile")

    def with_defaults(self, global_batch: int) -> TrainConfig:
        """A checked copy whose unset ``lr``, ``warmup_epochs`` and ``epochs`` are filled for ``global_batch``.

        LARS: the MLPerf reference convergence points interpolated at the batch (``menagerie.models.rcp``: 7.4 at 1632,
        10.5 at 3264, clamped outside the table), their warm-up and whole epochs of their schedule. SGD: 0.1 per
        256 images, scaled linearly (3 decimals, at least 0.001), 2 warm-up epochs, 40 epochs.
        """
        if self.optimizer == "lars":
            reference = rcp.reference_hyperparameters(global_batch)
            defaults = dict(lr=reference.base_lr, warmup_epochs=reference.warmup_epochs, epochs=reference.epochs)
        else:
            defaults = dict(lr=max(0.001, round(SGD_LR_PER_IMAGE * global_batch, 3)), **SGD_DEFAULTS)
        filled = replace(self, **{name: value for name, value in defaults.items() if getattr(self, name) is None})
        filled.check()
        return filled


@dataclass(frozen=True)
class DatasetFacts:
    """What the division rules ask of the data: classes, and every training and evaluation image (not batches)."""

    classes: int
    train_images: int
    eval_images: int


def division(config: TrainConfig, facts: DatasetFacts, cache_cleared: bool) -> tuple[str, list[str]]:
    """("closed", []) when every closed-division rule this code can check holds, else ("open", the broken rules).

    The rules (MLPerf Training 4.0.0, ResNet): ResNet-50 v1.5; ImageNet-sized data (1000 classes, at least
    1,281,167 training and 50,000 evaluation images); target top-1 0.759; label smoothing 0.1; weight decay
    0.0001 x 2^N; an SGD base learning rate that is a multiple of 0.001; the reference augmentation (random
    crops of 8-100% of the area, flips) at 224 px; evaluation every 4 epochs (offset 0-3, checked by
    ``TrainConfig.check``); the page cache dropped before the run. End learning rate (1e-4), decay power (2)
    and LARS epsilon (0) are fixed by this code. ``config`` must have its defaults filled (``with_defaults``).
    """
    if config.lr is None or config.epochs is None or config.warmup_epochs is None:
        raise ValueError("division needs a config with its defaults filled (TrainConfig.with_defaults)")
    rules = [
        (config.arch == "resnet50", f"arch {config.arch} is not ResNet-50 v1.5"),
        (facts.classes == IMAGENET_CLASSES, f"{facts.classes} classes, not ImageNet's {IMAGENET_CLASSES}"),
        (
            facts.train_images >= rcp.IMAGENET_TRAIN_IMAGES,
            f"{facts.train_images:,} training images, fewer than ImageNet's {rcp.IMAGENET_TRAIN_IMAGES:,}",
        ),
        (
            facts.eval_images >= IMAGENET_EVAL_IMAGES,
            f"{facts.eval_images:,} evaluation images, fewer than ImageNet's {IMAGENET_EVAL_IMAGES:,}",
        ),
        (config.target == mlperf.CLOSED_TARGET, f"target top-1 {config.target}, not {mlperf.CLOSED_TARGET}"),
        (
            config.label_smoothing == CLOSED_LABEL_SMOOTHING,
            f"label smoothing {config.label_smoothing}, not {CLOSED_LABEL_SMOOTHING}",
        ),
        (
            _is_power_of_two_multiple(config.weight_decay, 1e-4),
            f"weight decay {config.weight_decay} is not 0.0001 x 2^N",
        ),
        (
            config.optimizer != "sgd" or _is_multiple(config.lr, 0.001),
            f"SGD base learning rate {config.lr} is not a multiple of 0.001",
        ),
        (config.augment, "no augmentation (the reference trains on random-resized crops with flips)"),
        (
            config.min_scale == CLOSED_MIN_SCALE,
            f"random crops from {config.min_scale} of the area, not {CLOSED_MIN_SCALE}",
        ),
        (config.image_size == CLOSED_IMAGE_SIZE, f"{config.image_size} px images, not {CLOSED_IMAGE_SIZE}"),
        (
            config.eval_every == CLOSED_EVAL_EVERY,
            f"evaluation every {config.eval_every} epoch(s), not every {CLOSED_EVAL_EVERY} (offset 0-3)",
        ),
        (cache_cleared, f"page cache not dropped before the run (needs root and a writable {DROP_CACHES})"),
    ]
    reasons = [reason for holds, reason in rules if not holds]
    return ("open" if reasons else "closed"), reasons


def _is_power_of_two_multiple(value: float, unit: float) -> bool:
    """Whether ``value`` is ``unit * 2^N`` for an integer N (the compliance checker's test)."""
    return value > 0 and math.isclose(math.log2(value / unit), round(math.log2(value / unit)), abs_tol=1e-9)


def _is_multiple(value: float, unit: float) -> bool:
    return math.isclose(value / unit, round(value / unit), abs_tol=1e-6)


def drop_caches() -> bool:
    """Writes dirty pages back (``sync``) and drops the page cache, dentries and inodes (3 into
    ``/proc/sys/vm/drop_caches``), as MLPerf's ``cache_clear`` demands; False when not root or the kernel refuses."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    os.sync()
    try:
        DROP_CACHES.write_text("3\n")
    except OSError:
        return False
    return True


def evaluates_after(epochs_done: int, config: TrainConfig) -> bool:
    """Whether the run evaluates once ``epochs_done`` epochs are complete: every ``eval_every`` epochs counted from
    ``eval_offset`` (offset 0: after 4, 8, ...; offset 1: after 1, 5, 9, ...), and after the last epoch."""
    return epochs_done == config.epochs or (epochs_done > 0 and epochs_done % config.eval_every == config.eval_offset)


def epoch_blocks(config: TrainConfig) -> dict[int, int]:
    """First epoch (0-based) -> epoch count of each block of epochs that ends in an evaluation."""
    ends = [done for done in range(1, config.epochs + 1) if evaluates_after(done, config)]
    return {start: end - start for start, end in zip([0, *ends[:-1]], ends)}


@dataclass
class TrainResult:
    """Per-epoch mean training loss (averaged over processes), evaluations, timing and whether the target was met."""

    losses: list[float] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    train_images_per_epoch: int = 0
    processes: int = 1
    rank: int = 0
    run_seconds: float = 0.0
    reached_target: bool = False
    division: str = "open"
    division_reasons: list[str] = field(default_factory=list)
    cache_cleared: bool = False
    config: dict = field(default_factory=dict)


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose per-tensor step is scaled by a trust ratio (You et al., 2017).

    The trust ratio is ``eta*|w| / (|g| + wd*|w|)``.

    As in MLPerf, groups with ``lars=False`` (BatchNorm parameters, biases) take the
    plain momentum step with neither the ratio nor weight decay. The learning rate
    enters the momentum buffer: ``v = m*v + lr*ratio*(g + wd*w)``, ``w -= v``.
    """

    def __init__(self, groups, lr: float, momentum: float, eta: float = LARS_ETA):
        super().__init__(groups, dict(lr=lr, momentum=momentum, weight_decay=0.0, lars=True, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["lars"]:
                decay = group["weight_decay"]
                weight_norms = torch.stack(torch._foreach_norm(params))
                grad_norms = torch.stack(torch._foreach_norm(grads))
                ratio = torch.where(
                    (weight_norms > 0) & (grad_norms > 0),
                    group["eta"] * weight_norms / (grad_norms + decay * weight_norms),
                    torch.ones_like(weight_norms),
                )
                grads = torch._foreach_add(grads, params, alpha=decay)
                torch._foreach_mul_(grads, list(ratio.unbind()))
            buffers = []
            for p in params:
                state = self.state[p]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(p)
                buffers.append(state["momentum"])
            torch._foreach_mul_(buffers, group["momentum"])
            torch._foreach_add_(buffers, grads, alpha=group["lr"])
            torch._foreach_sub_(params, buffers)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weights of convolutions and linear layers decay (and take LARS's ratio); BatchNorm weights and biases do not."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    plain = [p for p in model.parameters() if p.ndim <= 1]
    return [dict(params=decay, weight_decay=weight_decay, lars=True), dict(params=plain, weight_decay=0.0, lars=False)]


def make_optimizer(config: TrainConfig, model: nn.Module, base_lr: float) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay)
    if config.optimizer == "lars":
        return LARS(groups, lr=base_lr, momentum=config.momentum)
    for group in groups:
        group.pop("lars")
    return torch.optim.SGD(groups, lr=base_lr, momentum=config.momentum)


def learning_rate(step: int, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then ``(base - end) * (1 - progress)^2 + end``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return (base_lr - END_LR) * (1 - progress) ** POLY_POWER + END_LR


@dataclass(frozen=True)
class Distributed:
    """This process's place: rank, world size, device (``cuda:LOCAL_RANK`` on GPUs)."""

    rank: int
    world_size: int
    device: torch.device


def init_distributed() -> Distributed:
    """Joins the process group when launched by torchrun, or by srun (``slurm_rendezvous``), with gloo on
    the CPU and NCCL on GPUs."""
    join_slurm_rendezvous()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank() if world_size > 1 else 0, world_size, device)


def _data_paths(config: TrainConfig) -> dict[str, Path]:
    """``train`` and ``val`` under the data root: ``.beton`` files for FFCV, image folders otherwise."""
    root = Path(config.data)
    if not root.is_dir():
        raise ValueError(f"data root {root} does not exist or is not a directory")
    if config.loader == "ffcv":
        return {split: root / f"{split}.beton" for split in ("train", "val")}
    return {split: root / split for split in ("train", "val")}


def _image_count(loader: str, path: Path) -> int:
    """Images in one split, read from the dataset itself (not from batches or a rank's shard)."""
    if loader == "ffcv":
        from ffcv.reader import Reader

        return int(Reader(str(path)).num_samples)
    return len(scan_imagefolder(path).samples)


def dataset_facts(config: TrainConfig, classes: int) -> DatasetFacts:
    """The dataset's classes and every training and evaluation image: MLPerf's ``train_samples`` and
    ``eval_samples``, whatever the batch size, the number of processes or how unevenly the shards split."""
    paths = _data_paths(config)
    return DatasetFacts(classes, _image_count(config.loader, paths["train"]), _image_count(config.loader, paths["val"]))


def _loaders(config: TrainConfig, place: Distributed) -> tuple[Loader, Loader]:
    paths = _data_paths(config)
    common = dict(
        size=config.image_size,
        device=place.device,
        workers=config.workers,
        seed=config.seed,
        rank=place.rank,
        world_size=place.world_size,
        min_scale=config.min_scale,
    )
    train = make_loader(
        config.loader, paths["train"], batch_size=config.batch_size, train=True, augment=config.augment, **common
    )
    val = make_loader(config.loader, paths["val"], batch_size=config.batch_size, train=False, **common)
    if val.classes > train.classes:
        raise ValueError(f"validation data has {val.classes} classes, training data only {train.classes}")
    return train, val


def _reduce(values: torch.Tensor, place: Distributed, op=dist.ReduceOp.SUM) -> torch.Tensor:
    if place.world_size > 1:
        dist.all_reduce(values, op=op)
    return values


def evaluate(model: nn.Module, loader: Loader, place: Distributed, autocast) -> float:
    """Top-1 accuracy over the whole validation set (each process its shard, counts summed)."""
    model.eval()
    counts = torch.zeros(2, dtype=torch.float64, device=place.device)
    with torch.no_grad():
        for images, labels in loader:
            with autocast():
                predictions = model(images).argmax(1)
            counts[0] += (predictions == labels).sum()
            counts[1] += labels.numel()
    model.train()
    correct, total = _reduce(counts, place).tolist()
    return correct / total


def announce_division(
    config: TrainConfig, place: Distributed, classes: int, notice: Callable[[str], None] | None
) -> tuple[str, list[str], DatasetFacts, bool]:
    """Counts the dataset, drops the page cache (every process, only for a run that writes an MLLOG) and decides
    the division; rank 0 announces it.

    Returns (division, reasons, dataset facts, whether this process's cache drop worked).
    """
    facts = dataset_facts(config, classes)
    cache_cleared = drop_caches() if config.mllog else False
    verdict, reasons = division(config, facts, cache_cleared)
    if notice and place.rank == 0:
        notice(f"MLPerf division: {verdict}" + (f" ({'; '.join(reasons)})" if reasons else ""))
    return verdict, reasons, facts, cache_cleared


def train(
    config: TrainConfig,
    progress: Callable[[str, float], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> TrainResult:
    """Trains until the target top-1 or ``config.epochs``; writes the MLLOG when ``config.mllog`` is set.

    Unset hyperparameters are filled for the global batch (``TrainConfig.with_defaults``). ``notice(text)`` is
    called on rank 0 once before training with the MLPerf division and why it is open;
    ``progress(description, fraction_done)`` on rank 0 after every step.
    """
    config.check()
    place = init_distributed()
    train_loader, val_loader = _loaders(config, place)  # checks the data before a log file is opened
    global_batch = config.batch_size * place.world_size
    config = config.with_defaults(global_batch)
    verdict, reasons, facts, cache_cleared = announce_division(config, place, train_loader.classes, notice)
    log = mlperf.MLPerfLog(config.mllog, place.rank) if config.mllog else None
    constants = log.constants if log else None
    if log:
        log.event(constants.CACHE_CLEAR, cache_cleared)
        log.start(constants.INIT_START)
    torch.manual_seed(config.seed)
    optimized = config.mode == "optimized"
    memory_format = torch.channels_last if optimized else torch.contiguous_format
    model = build(config.arch, train_loader.classes).to(place.device, memory_format=memory_format)
    base_lr = config.lr
    optimizer = make_optimizer(config, model, base_lr)
    network = model
    if place.world_size > 1:
        network = nn.parallel.DistributedDataParallel(
            model, device_ids=[place.device.index] if place.device.type == "cuda" else None
        )
    if config.compile:
        network = torch.compile(network)
    use_bf16 = optimized and place.device.type == "cuda"

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    result = TrainResult(
        train_images_per_epoch=train_loader.samples * place.world_size,
        processes=place.world_size,
        rank=place.rank,
        division=verdict,
        division_reasons=reasons,
        cache_cleared=cache_cleared,
        config={k: str(v) for k, v in asdict(config).items()},
    )
    if log:
        on_gpu = place.device.type == "cuda"
        platform = f"{place.world_size}x{torch.cuda.get_device_name(place.device) if on_gpu else 'CPU'}"
        log.submission(platform, verdict, place.world_size)
        log.hyperparameters(
            optimizer=config.optimizer,
            global_batch_size=global_batch,
            accumulation=config.accumulation,
            base_lr=base_lr,
            end_lr=END_LR,
            poly_power=POLY_POWER,
            decay_steps=total_steps - warmup_steps,
            warmup_epochs=config.warmup_epochs,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            bn_span=config.batch_size // config.accumulation,
            train_samples=facts.train_images,
            eval_samples=facts.eval_images,
            seed=config.seed,
        )
        log.end(constants.INIT_STOP)
        log.start(constants.RUN_START)
    if place.world_size > 1:
        dist.barrier()
    run_start = time.perf_counter()
    step = 0
    blocks = epoch_blocks(config)
    block_first = 0
    for epoch in range(config.epochs):
        if epoch in blocks:
            block_first = epoch
            if log:
                log.start(constants.BLOCK_START, first_epoch_num=epoch, epoch_count=blocks[epoch])
        if log:
            log.start(constants.EPOCH_START, epoch_num=epoch)
        epoch_start = time.perf_counter()
        train_loader.set_epoch(epoch)
        losses = []
        for images, labels in train_loader:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, base_lr, warmup_steps, total_steps)
            optimizer.zero_grad(set_to_none=True)
            step_loss = torch.zeros((), device=place.device)
            for micro in range(config.accumulation):
                inputs = images[micro :: config.accumulation].contiguous(memory_format=memory_format)
                sync = micro == config.accumulation - 1 or place.world_size == 1
                with contextlib.nullcontext() if sync else network.no_sync():
                    with autocast():
                        logits = network(inputs)
                    loss = criterion(logits.float(), labels[micro :: config.accumulation]) / config.accumulation
                    loss.backward()
                step_loss += loss.detach()
            optimizer.step()
            losses.append(step_loss)
            step += 1
            if progress and place.rank == 0:
                progress(f"epoch {epoch + 1}/{config.epochs}", step / total_steps)
        step_losses = _reduce(torch.stack(losses), place) / place.world_size
        result.step_losses += step_losses.tolist()
        result.losses.append(step_losses.mean().item())
        result.epoch_seconds.append(time.perf_counter() - epoch_start)
        if log:
            log.end(constants.EPOCH_STOP, epoch_num=epoch)
            images_per_s = result.train_images_per_epoch / result.epoch_seconds[-1]
            log.tracked_throughput(epoch + 1, images_per_s)  # step: the epochs done, as NVIDIA's logs
        if evaluates_after(epoch + 1, config):
            if log:
                log.end(constants.BLOCK_STOP, first_epoch_num=block_first)
                log.start(constants.EVAL_START, epoch_num=epoch + 1)
            accuracy = evaluate(network, val_loader, place, autocast)
            result.evaluations.append({"epoch": epoch + 1, "top1": accuracy})
            if log:
                log.event(constants.EVAL_ACCURACY, accuracy, epoch_num=epoch + 1)
                log.end(constants.EVAL_STOP, epoch_num=epoch + 1)
            if accuracy >= config.target:
                result.reached_target = True
                break
    result.run_seconds = time.perf_counter() - run_start
    if log:
        log.end(constants.RUN_STOP, status=constants.SUCCESS if result.reached_target else constants.ABORTED)
        log.close()
    return result
