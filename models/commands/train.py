"""``menagerie train``: the training loops, ``resnet`` (the MLPerf recipe) and ``sae`` (a TopK sparse autoencoder)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from menagerie.harness.cli.common import (
    UsageError,
    add_config_options,
    config_from,
    console,
    errors,
    fraction,
    positive,
    requested_device,
    write_record,
)
from menagerie.harness.formatting import format_number
from menagerie.harness.registry import DTYPES, torch_dtype
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
    from menagerie.models.train_resnet import MODES, OPTIMIZERS, TrainConfig

    resnet = train_commands.add_parser("resnet", help="train a ResNet with the MLPerf recipe (torchrun for DDP)")
    add_config_options(
        resnet,
        TrainConfig,
        {
            "data": dict(type=Path, help="root with train/ and val/ (or train.beton, val.beton)"),
            "arch": dict(choices=list(ARCHS)),
            "loader": dict(choices=LOADERS),
            "epochs": dict(
                type=positive(int),
                help="most epochs, stopping early at the target (default: LARS, the "
                "reference convergence point's schedule for the global batch; "
                "SGD, 40)",
            ),
            "batch_size": dict(type=positive(int), help="images per step per process"),
            "accumulation": dict(type=positive(int), help="micro-batches per step"),
            "optimizer": dict(choices=OPTIMIZERS),
            "lr": dict(
                type=positive(float),
                help="peak learning rate (default: LARS, MLPerf's reference convergence "
                "points interpolated at the global batch; SGD, 0.1 per 256 images)",
            ),
            "warmup_epochs": dict(
                type=fraction,
                help="linear warm-up, epochs (default: LARS, from the reference convergence points; SGD, 2)",
            ),
            "weight_decay": dict(type=fraction, help="on convolution and linear weights only"),
            "momentum": dict(type=fraction),
            "label_smoothing": dict(type=fraction),
            "eval_every": dict(type=positive(int), help="epochs between evaluations (the closed division: 4)"),
            "eval_offset": dict(
                type=int,
                help="evaluate after epochs OFFSET, OFFSET + eval-every, ... (0: after "
                "eval-every epochs); 0 to eval-every - 1",
            ),
            "target": dict(type=positive(float), help="stop at this top-1 (default: MLPerf's closed-division target)"),
            "image_size": dict(type=positive(int), help="training and evaluation image side"),
            "min_scale": dict(type=positive(float), help="smallest random-crop area fraction"),
            "augment": dict(help="train on centre crops (no random crop or flip)"),
            "workers": dict(type=positive(int), help="loader workers per process"),
            "seed": dict(type=int),
            "mode": dict(
                choices=MODES, help="optimized (channels_last, bf16 autocast on GPUs) or reference (eager fp32)"
            ),
            "compile": dict(help="torch.compile the model (optimized mode)"),
            "mllog": dict(type=Path, help="MLPerf log to write (default: OUT/<run>.mllog)"),
        },
    )
    resnet.add_argument("--out", type=Path, default=Path("results") / "train", help="folder for the run record")
    resnet.set_defaults(func=cmd_train_resnet)


def add_sae_parser(train_commands) -> None:
    from menagerie.models.sae import TrainConfig

    sae = train_commands.add_parser("sae", help="train a TopK sparse autoencoder on an activation dataset")
    sae.add_argument("--activations", type=Path, required=True, help="folder written by 'menagerie activations'")
    sae.add_argument("--latents", type=positive(int), default=None, help="dictionary size M (default: 8 x d)")
    sae.add_argument("--k", type=positive(int), default=32, help="active latents per token")
    add_config_options(
        sae,
        TrainConfig,
        {
            "steps": dict(type=positive(int), help="training batches"),
            "batch_size": dict(type=positive(int), help="tokens per batch"),
            "lr": dict(type=positive(float), help="Adam learning rate (default: 2e-4 / sqrt(M / 2^14))"),
            "warmup_steps": dict(type=positive(int), help="linear LR warm-up"),
            "auxk": dict(help="train without the AuxK loss on dead latents"),
            "dead_after_tokens": dict(
                type=positive(int), help="a latent that has not fired for this many tokens is dead"
            ),
            "seed": dict(type=int),
        },
    )
    sae.add_argument(
        "--dtype", choices=sorted(DTYPES), help="parameter dtype (default: bf16 on a GPU, fp32 on the CPU)"
    )
    sae.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    sae.add_argument("--out", type=Path, default=Path("results") / "train", help="folder for the run record")
    sae.set_defaults(func=cmd_train_sae)


def cmd_train_resnet(args) -> int:
    from menagerie.harness import provenance
    from menagerie.harness.device import default_device
    from menagerie.models import train_resnet

    run_name = f"resnet-{args.arch}-{args.loader}-{args.mode}"
    config = config_from(args, train_resnet.TrainConfig, mllog=args.mllog or args.out / f"{run_name}.mllog")
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=errors, transient=True
        ) as progress:
            bar = progress.add_task("preparing", total=1.0)
            result = train_resnet.train(
                config,
                progress=lambda text, done: progress.update(bar, description=text, completed=done),
                notice=progress.console.print,
            )
    except ValueError as error:  # includes DataError
        raise UsageError(str(error)) from None
    if result.rank != 0:
        return 0
    table = Table(title=f"{args.arch} on {args.data} ({args.loader}, {args.mode}, {result.processes} process(es))")
    for column in ("epoch", "train loss", "top-1", "seconds", "img/s"):
        table.add_column(column, justify="right")
    accuracy = {evaluation["epoch"]: evaluation["top1"] for evaluation in result.evaluations}
    for epoch, (loss, seconds) in enumerate(zip(result.losses, result.epoch_seconds), 1):
        table.add_row(
            str(epoch),
            f"{loss:.4f}",
            format_number(accuracy.get(epoch), ".4f"),
            f"{seconds:.1f}",
            f"{result.train_images_per_epoch / seconds:,.0f}",
        )
    console.print(table)
    verdict = "reached" if result.reached_target else "did not reach"
    console.print(
        f"{verdict} top-1 {args.target} in {result.run_seconds / 60:.2f} min; MLLOG {config.mllog} "
        f"({result.division} division)"
    )
    record = {
        "provenance": provenance.collect(default_device()),
        "benchmark": "resnet.time_to_accuracy",
        "result": dataclasses.asdict(result),
        "mllog": str(config.mllog),
    }
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
        config = config_from(args, TrainConfig, latents=latents)
    except ActivationDatasetError as error:
        raise UsageError(str(error)) from None
    columns = (
        TextColumn("train sae"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[metrics]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("steps", total=config.steps, metrics="")
        _, result = train_sae(
            dataset,
            config,
            device,
            dtype,
            on_step=lambda record: progress.update(
                task,
                completed=record["step"],
                metrics=f"FVU {record['fvu']:.3f}  L0 {record['l0']:.1f}  dead {record['dead_fraction']:.1%}",
            ),
        )
    record = {
        "kind": "sae_training",
        "provenance": provenance.collect(device),
        "dataset": dataclasses.asdict(dataset.manifest) | {"folder": str(args.activations)},
        "dtype": dtype_name(dtype),
        "result": dataclasses.asdict(result),
    }
    stamp = record["provenance"]["timestamp"].split("+")[0].replace("-", "").replace(":", "")
    path = write_json_atomically(record, args.out / f"{stamp}_sae_m{latents}_k{args.k}.json")
    table = Table(
        title=f"TopK SAE on {dataset.manifest.model} {dataset.manifest.layer} "
        f"({record['provenance']['device']}, {dtype_name(dtype)})"
    )
    for column in ("tokens", "tokens/s", "FVU first", "FVU final", "L0", "dead"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{result.tokens:,}",
        f"{result.tokens_per_s:,.0f}",
        f"{result.fvu_first:.4f}",
        f"{result.fvu_final:.4f}",
        f"{result.l0_final:.1f}",
        f"{result.dead_fraction_final:.1%}",
    )
    console.print(table)
    console.print(f"wrote {path}")
    return 0
