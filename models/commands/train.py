"""``menagerie train``: the training loops, ``resnet`` (the MLPerf recipe) and ``sae`` (a TopK sparse autoencoder)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from menagerie.harness.cli.common import (UsageError, console, errors, fraction, positive, requested_device, torch_dtype,
                                          write_record)
from menagerie.harness.formatting import format_number
from menagerie.harness.results import write_json_atomically


# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "train": "training loops: resnet (MLPerf style), sae (TopK sparse autoencoder)",
}


def add_parser(commands) -> None:
    train = commands.add_parser("train", help=COMMANDS["train"])
    train_commands = train.add_subparsers(dest="train_command", required=True, metavar="MODEL")
    add_resnet_parser(train_commands)
    add_sae_parser(train_commands)


def add_resnet_parser(train_commands) -> None:
    from menagerie.models.data.loaders import LOADERS
    from menagerie.models.resnet import ARCHS
    from menagerie.models.train_resnet import MODES, OPTIMIZERS

    resnet = train_commands.add_parser("resnet", help="train a ResNet with the MLPerf recipe (torchrun for DDP)")
    resnet.add_argument("--data", type=Path, required=True, help="root with train/ and val/ (or train.beton, val.beton)")
    resnet.add_argument("--arch", choices=list(ARCHS), default="resnet50")
    resnet.add_argument("--loader", choices=LOADERS, default="dali")
    resnet.add_argument("--epochs", type=positive(int),
                        help="most epochs, stopping early at the target (default: LARS, the reference convergence "
                             "point's schedule for the global batch; SGD, 40)")
    resnet.add_argument("--batch-size", type=positive(int), default=256, help="images per step per process")
    resnet.add_argument("--accumulation", type=positive(int), default=1, help="micro-batches per step")
    resnet.add_argument("--optimizer", choices=OPTIMIZERS, default="lars")
    resnet.add_argument("--lr", type=positive(float),
                        help="peak learning rate (default: LARS, MLPerf's reference convergence points interpolated "
                             "at the global batch; SGD, 0.1 per 256 images)")
    resnet.add_argument("--warmup-epochs", type=fraction,
                        help="linear warm-up, epochs (default: LARS, from the reference convergence points; SGD, 2)")
    resnet.add_argument("--weight-decay", type=fraction, default=5e-5, help="on convolution and linear weights only")
    resnet.add_argument("--momentum", type=fraction, default=0.9)
    resnet.add_argument("--label-smoothing", type=fraction, default=0.1)
    resnet.add_argument("--eval-every", type=positive(int), default=4,
                        help="epochs between evaluations (the closed division: 4)")
    resnet.add_argument("--eval-offset", type=int, default=0,
                        help="evaluate after epochs OFFSET, OFFSET + eval-every, ... (0: after eval-every epochs); "
                             "0 to eval-every - 1")
    resnet.add_argument("--target", type=positive(float), default=0.759, help="stop at this top-1")
    resnet.add_argument("--image-size", type=positive(int), default=224, help="training and evaluation image side")
    resnet.add_argument("--min-scale", type=positive(float), default=0.08, help="smallest random-crop area fraction")
    resnet.add_argument("--no-augment", action="store_true", help="train on centre crops (no random crop or flip)")
    resnet.add_argument("--workers", type=positive(int), default=4, help="loader workers per process")
    resnet.add_argument("--seed", type=int, default=0)
    resnet.add_argument("--mode", choices=MODES, default="optimized",
                        help="optimized (channels_last, bf16 autocast on GPUs) or reference (eager fp32)")
    resnet.add_argument("--compile", action="store_true", help="torch.compile the model (optimized mode)")
    resnet.add_argument("--mllog", type=Path, help="MLPerf log to write (default: OUT/<run>.mllog)")
    resnet.add_argument("--out", type=Path, default=Path("results") / "train", help="folder for the run record")
    resnet.set_defaults(func=cmd_train_resnet)


def add_sae_parser(train_commands) -> None:
    sae = train_commands.add_parser("sae", help="train a TopK sparse autoencoder on an activation dataset")
    sae.add_argument("--activations", type=Path, required=True, help="folder written by 'menagerie activations'")
    sae.add_argument("--latents", type=positive(int), default=None, help="dictionary size M (default: 8 x d)")
    sae.add_argument("--k", type=positive(int), default=32, help="active latents per token")
    sae.add_argument("--steps", type=positive(int), default=1000, help="training batches")
    sae.add_argument("--batch-size", type=positive(int), default=4096, help="tokens per batch")
    sae.add_argument("--lr", type=positive(float), help="Adam learning rate (default: 2e-4 / sqrt(M / 2^14))")
    sae.add_argument("--warmup-steps", type=positive(int), default=100, help="linear LR warm-up")
    sae.add_argument("--no-auxk", action="store_true", help="train without the AuxK loss on dead latents")
    sae.add_argument("--dead-after-tokens", type=positive(int), default=10_000_000,
                     help="a latent that has not fired for this many tokens is dead")
    sae.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help="parameter dtype (default: bf16 on a GPU, "
                                                                         "fp32 on the CPU)")
    sae.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    sae.add_argument("--seed", type=int, default=0)
    sae.add_argument("--out", type=Path, default=Path("results") / "train", help="folder for the run record")
    sae.set_defaults(func=cmd_train_sae)


def cmd_train_resnet(args) -> int:
    from menagerie.harness import provenance
    from menagerie.harness.device import default_device
    from menagerie.models import train_resnet

    run_name = f"resnet-{args.arch}-{args.loader}-{args.mode}"
    config = train_resnet.TrainConfig(
        data=args.data, arch=args.arch, loader=args.loader, epochs=args.epochs, batch_size=args.batch_size,
        accumulation=args.accumulation, optimizer=args.optimizer, lr=args.lr, warmup_epochs=args.warmup_epochs,
        momentum=args.momentum, weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
        eval_every=args.eval_every, eval_offset=args.eval_offset, target=args.target, image_size=args.image_size,
        min_scale=args.min_scale, augment=not args.no_augment, workers=args.workers, seed=args.seed, mode=args.mode,
        compile=args.compile, mllog=args.mllog or args.out / f"{run_name}.mllog",
    )
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=errors,
                      transient=True) as progress:
            bar = progress.add_task("preparing", total=1.0)
            result = train_resnet.train(config, progress=lambda text, done: progress.update(
                bar, description=text, completed=done), notice=progress.console.print)
    except ValueError as error:  # includes DataError
        raise UsageError(str(error)) from None
    if result.rank != 0:
        return 0
    table = Table(title=f"{args.arch} on {args.data} ({args.loader}, {args.mode}, {result.processes} process(es))")
    for column in ("epoch", "train loss", "top-1", "seconds", "img/s"):
        table.add_column(column, justify="right")
    accuracy = {evaluation["epoch"]: evaluation["top1"] for evaluation in result.evaluations}
    for epoch, (loss, seconds) in enumerate(zip(result.losses, result.epoch_seconds), 1):
        table.add_row(str(epoch), f"{loss:.4f}", format_number(accuracy.get(epoch), ".4f"), f"{seconds:.1f}",
                      f"{result.train_images_per_epoch / seconds:,.0f}")
    console.print(table)
    verdict = "reached" if result.reached_target else "did not reach"
    console.print(f"{verdict} top-1 {args.target} in {result.run_seconds / 60:.2f} min; MLLOG {config.mllog} "
                  f"({result.division} division)")
    record = {"provenance": provenance.collect(default_device()), "benchmark": "resnet.time_to_accuracy",
              "result": dataclasses.asdict(result), "mllog": str(config.mllog)}
    console.print(f"wrote {write_record(record, args.out, run_name)}")
    return 0


def cmd_train_sae(args) -> int:
    import torch

    from menagerie.harness import provenance
    from menagerie.harness.registry import dtype_name
    from menagerie.models.activations import ActivationDataset, ActivationDatasetError
    from menagerie.models.sae import TrainConfig, train_sae

    device = requested_device(args.device)
    dtype = torch_dtype(args.dtype) if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    try:
        dataset = ActivationDataset(args.activations)
        latents = args.latents or 8 * dataset.dim
        if args.k > latents:
            raise UsageError(f"--k {args.k} exceeds the number of latents {latents}")
        config = TrainConfig(latents=latents, k=args.k, batch_size=args.batch_size, steps=args.steps, lr=args.lr,
                             warmup_steps=args.warmup_steps, auxk=not args.no_auxk,
                             dead_after_tokens=args.dead_after_tokens, seed=args.seed)
    except ActivationDatasetError as error:
        raise UsageError(str(error)) from None
    columns = (TextColumn("train sae"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[metrics]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("steps", total=config.steps, metrics="")
        _, result = train_sae(dataset, config, device, dtype, on_step=lambda record: progress.update(
            task, completed=record["step"],
            metrics=f"FVU {record['fvu']:.3f}  L0 {record['l0']:.1f}  dead {record['dead_fraction']:.1%}"))
    record = {"kind": "sae_training", "provenance": provenance.collect(device),
              "dataset": dataclasses.asdict(dataset.manifest) | {"folder": str(args.activations)},
              "dtype": dtype_name(dtype), "result": dataclasses.asdict(result)}
    stamp = record["provenance"]["timestamp"].split("+")[0].replace("-", "").replace(":", "")
    path = write_json_atomically(record, args.out / f"{stamp}_sae_m{latents}_k{args.k}.json")
    table = Table(title=f"TopK SAE on {dataset.manifest.model} {dataset.manifest.layer} "
                        f"({record['provenance']['device']}, {dtype_name(dtype)})")
    for column in ("tokens", "tokens/s", "FVU first", "FVU final", "L0", "dead"):
        table.add_column(column, justify="right")
    table.add_row(f"{result.tokens:,}", f"{result.tokens_per_s:,.0f}", f"{result.fvu_first:.4f}",
                  f"{result.fvu_final:.4f}", f"{result.l0_final:.1f}", f"{result.dead_fraction_final:.1%}")
    console.print(table)
    console.print(f"wrote {path}")
    return 0
