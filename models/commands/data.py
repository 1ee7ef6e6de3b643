"""``menagerie data``: synthetic, digits or ImageNet image folders, FFCV conversion and the loaders' throughput."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from menagerie.harness.cli.common import (
    UsageError,
    console,
    errors,
    positive,
    progress_bar,
    requested_device,
    write_record,
)

# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "data": "datasets: synthetic, digits or ImageNet image folders, FFCV conversion, loader speed",
}


def probability(text: str) -> float:
    """An argparse type: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return value


def add_parser(commands) -> None:
    from menagerie.models.data import convert
    from menagerie.models.data.loaders import LOADERS

    data = commands.add_parser("data", help=COMMANDS["data"])
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    synth = data_commands.add_parser(
        "synth", help="write a synthetic JPEG dataset: OUT/train and OUT/val image folders"
    )
    synth.add_argument("out", type=Path, help="dataset root to create")
    synth.add_argument("--classes", type=positive(int), default=10, help="number of classes")
    synth.add_argument("--train-per-class", type=positive(int), default=100, help="training images per class")
    synth.add_argument("--val-per-class", type=positive(int), default=20, help="validation images per class")
    synth.add_argument("--size", type=positive(int), help="side of every (square) image, pixels (default 256)")
    synth.add_argument(
        "--min-size",
        type=positive(int),
        help="with --max-size: each image's width and height are "
        "drawn uniformly from [MIN_SIZE, MAX_SIZE] (seeded), like the varied sizes of real datasets",
    )
    synth.add_argument("--max-size", type=positive(int), help="see --min-size")
    synth.add_argument("--seed", type=int, default=0, help="random seed")
    digits = data_commands.add_parser(
        "digits", help="write scikit-learn's 8x8 digits, upsampled, as OUT/train and OUT/val"
    )
    digits.add_argument("out", type=Path, help="dataset root to create")
    digits.add_argument("--size", type=positive(int), default=16, help="image side after upsampling, pixels")
    to_ffcv = data_commands.add_parser("to-ffcv", help="convert an image folder to an FFCV .beton file")
    to_ffcv.add_argument("image_folder", type=Path, help="ROOT/<class>/<image> folder")
    to_ffcv.add_argument("out", type=Path, help="the .beton file to write")
    to_ffcv.add_argument(
        "--max-res",
        "--max-resolution",
        dest="max_resolution",
        type=positive(int),
        help="cap the longer image side, keeping the aspect (like ffcv-imagenet's; default: keep)",
    )
    to_ffcv.add_argument(
        "--write-mode",
        choices=convert.WRITE_MODES,
        default="jpg",
        help="jpg: every image as JPEG; raw: uncompressed pixels (no decoding, several times the "
        "disk); proportion: JPEG with probability --compress-probability (default jpg)",
    )
    to_ffcv.add_argument(
        "--compress-probability",
        type=probability,
        default=0.5,
        help="share of images stored as JPEG with --write-mode proportion (default 0.5, as ffcv-imagenet)",
    )
    to_ffcv.add_argument("--jpeg-quality", type=positive(int), default=90, help="JPEG quality of the stored images")
    to_ffcv.add_argument("--workers", type=positive(int), default=4, help="writer processes")
    add_imagenet_parser(data_commands)
    speed = data_commands.add_parser("throughput", help="img/s of the loaders on ROOT/train (and ROOT/train.beton)")
    speed.add_argument("root", type=Path, help="dataset root holding train/ and train.beton")
    speed.add_argument(
        "--loader", action="append", choices=LOADERS, default=[], help="loader (repeatable; default all)"
    )
    speed.add_argument(
        "--size",
        action="append",
        type=positive(int),
        default=[],
        help="output image side (repeatable; default 224 and 32)",
    )
    speed.add_argument("--batch-size", type=positive(int), default=256, help="images per batch")
    speed.add_argument("--workers", type=positive(int), default=4, help="worker processes or threads per loader")
    speed.add_argument(
        "--batches",
        type=positive(int),
        default=50,
        help="timed batches per loader and size, after the warm-up (across epochs as needed)",
    )
    speed.add_argument(
        "--warmup-batches",
        type=positive(int),
        default=10,
        help="untimed batches first: compilation, pipeline build, full prefetch queues",
    )
    speed.add_argument(
        "--rounds",
        type=positive(int),
        default=3,
        help="rounds, each measuring every loader and size once in turn; rows give the median",
    )
    speed.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    speed.add_argument("--out", type=Path, default=Path("results") / "loaders", help="folder for the record")
    stages = data_commands.add_parser(
        "stages", help="where each loader's time goes: ms per image of each stage, one core"
    )
    stages.add_argument("root", type=Path, help="dataset root holding train/ and train.beton")
    stages.add_argument(
        "--loader", action="append", choices=LOADERS, default=[], help="loader (repeatable; default all)"
    )
    stages.add_argument("--size", type=positive(int), default=224, help="output image side")
    stages.add_argument("--batch-size", type=positive(int), default=64, help="images per batch")
    stages.add_argument("--images", type=positive(int), default=512, help="images timed per measurement")
    stages.add_argument("--rounds", type=positive(int), default=3, help="repetitions; each figure is the fastest")
    stages.add_argument("--out", type=Path, default=Path("results") / "loaders", help="folder for the record")
    data.set_defaults(func=cmd_data)


def add_imagenet_parser(data_commands) -> None:
    """``menagerie data imagenet SRC DEST``: an ImageNet download as DEST/train and DEST/val class folders."""
    imagenet = data_commands.add_parser(
        "imagenet", help="an ILSVRC2012 download as DEST/train and DEST/val class folders (links or copies)"
    )
    imagenet.add_argument("src", type=Path, help="download root: SRC/train/<wnid>/*.JPEG and flat SRC/val/*.JPEG")
    imagenet.add_argument("dest", type=Path, help="dataset root to create (DEST/train, DEST/val)")
    labels = imagenet.add_mutually_exclusive_group()
    labels.add_argument("--devkit", type=Path, help="ILSVRC2012_devkit_t12 folder or tarball: the validation labels")
    labels.add_argument(
        "--val-labels",
        type=Path,
        help="validation labels: lines '<image file name> <wnid>', or "
        "Kaggle's LOC_val_solution.csv (ImageId,PredictionString)",
    )
    placing = imagenet.add_mutually_exclusive_group()
    placing.add_argument("--link", dest="copy", action="store_false", help="symbolic links to SRC (default)")
    placing.add_argument("--copy", dest="copy", action="store_true", help="copies of the images")
    imagenet.set_defaults(copy=False)


def cmd_data(args) -> int:
    from menagerie.models.data import convert, folders

    try:
        if args.data_command == "synth":
            size = synth_size(args)
            with progress_bar() as progress:
                for split, per_class, seed in (
                    ("train", args.train_per_class, args.seed),
                    ("val", args.val_per_class, args.seed + 1),
                ):
                    bar = progress.add_task(f"writing {split}", total=args.classes * per_class)
                    folders.write_synthetic(
                        args.out / split,
                        args.classes,
                        per_class,
                        size,
                        seed=seed,
                        progress=lambda done, bar=bar: progress.update(bar, completed=done),
                    )
            sides = f"{size}x{size}" if isinstance(size, int) else f"sides {size[0]} to {size[1]}"
            console.print(
                f"wrote {args.classes * (args.train_per_class + args.val_per_class)} images "
                f"({sides}, {args.classes} classes) under {args.out}/train and val"
            )
        elif args.data_command == "digits":
            counts = folders.write_digits(args.out, size=args.size)
            console.print(
                f"wrote {counts[0]} training and {counts[1]} validation digits ({args.size}x{args.size}) "
                f"under {args.out}"
            )
        elif args.data_command == "to-ffcv":
            with console.status(f"writing {args.out}"):
                count = convert.to_ffcv(
                    args.image_folder,
                    args.out,
                    max_resolution=args.max_resolution,
                    jpeg_quality=args.jpeg_quality,
                    workers=args.workers,
                    write_mode=args.write_mode,
                    compress_probability=args.compress_probability,
                )
            storage = convert.beton_storage(args.out)
            console.print(f"wrote {count} images to {args.out} ({storage['jpg']} as JPEG, {storage['raw']} raw)")
        elif args.data_command == "imagenet":
            data_imagenet(args)
        elif args.data_command == "stages":
            return data_stages(args)
        else:
            return data_throughput(args)
    except ValueError as error:  # includes DataError
        raise UsageError(str(error)) from None
    return 0


def synth_size(args) -> int | tuple[int, int]:
    """``--size`` (default 256), or the range (``--min-size``, ``--max-size``); UsageError for a bad combination."""
    ranged = (args.min_size, args.max_size)
    if ranged == (None, None):
        return args.size or 256
    if args.size is not None:
        raise UsageError("give either --size or --min-size with --max-size, not both")
    if None in ranged:
        raise UsageError("--min-size and --max-size go together")
    if args.min_size > args.max_size:
        raise UsageError(f"--min-size {args.min_size} is larger than --max-size {args.max_size}")
    return ranged


def data_imagenet(args) -> None:
    """Checks the ImageNet download at ``args.src``, then links (or copies) it as class folders under ``args.dest``."""
    from menagerie.models.data import imagenet

    with console.status(f"reading {args.src}"):
        labels = (
            imagenet.read_devkit(args.devkit)
            if args.devkit
            else imagenet.read_val_labels(args.val_labels)
            if args.val_labels
            else None
        )
        layout = imagenet.plan_imagenet(args.src, labels)
    console.print(
        f"{args.src}: {len(layout.classes)} classes, {len(layout.train):,} training and "
        f"{len(layout.val):,} validation images"
    )
    for warning in layout.warnings:
        errors.print(f"[yellow]warning:[/] {warning}")
    with progress_bar() as progress:
        bar = progress.add_task("copying" if args.copy else "linking", total=len(layout.train) + len(layout.val))
        imagenet.write_imagenet(
            layout, args.dest, copy=args.copy, progress=lambda done: progress.update(bar, completed=done)
        )
    console.print(f"wrote {args.dest}/train and {args.dest}/val ({'copies' if args.copy else 'links'})")


def data_throughput(args) -> int:
    from menagerie.harness import provenance
    from menagerie.models.data import loader_throughput as loader_bench

    device = requested_device(args.device)
    chosen = args.loader or list(loader_bench.LOADERS)
    sizes = args.size or [224, 32]
    with console.status("measuring loaders") as status:
        results = loader_bench.measure(
            args.root,
            chosen,
            sizes,
            args.batch_size,
            args.workers,
            args.batches,
            args.warmup_batches,
            device,
            args.rounds,
            on_result=lambda loader, size, round_index, rate: status.update(
                f"round {round_index + 1}/{args.rounds}: {loader} at {size} px, {rate:,.0f} img/s"
            ),
        )
    speedups = loader_bench.speedups(results)
    table = Table(
        title=f"loader throughput on {device} ({args.workers} workers, batch {args.batch_size}, "
        f"{args.warmup_batches} warm-up + {args.batches} timed batches, median of {args.rounds} "
        f"rounds)"
    )
    for column in ("loader", "size", "cores", "img/s", "rounds' range", f"× {loader_bench.BASELINE}", "stored as"):
        table.add_column(column, justify="left" if column in ("loader", "stored as") else "right")
    for result in results:
        ratio = speedups.get((result.loader, result.size))
        stored = (
            "" if result.storage is None else ", ".join(f"{count} {mode}" for mode, count in result.storage.items())
        )
        table.add_row(
            result.loader,
            str(result.size),
            str(result.cores),
            f"{result.images_per_s:,.0f}",
            f"{min(result.rounds_images_per_s):,.0f}–{max(result.rounds_images_per_s):,.0f}",
            "" if ratio is None else f"{ratio:.2f}",
            stored,
        )
    console.print(table)
    rows = [
        result.to_dict() | {"speedup_vs_torchvision": speedups.get((result.loader, result.size))} for result in results
    ]
    record = {
        "provenance": provenance.collect(device),
        "benchmark": "loaders.throughput",
        "config": {
            "root": str(args.root),
            "batch_size": args.batch_size,
            "workers": args.workers,
            "warmup_batches": args.warmup_batches,
            "batches": args.batches,
            "rounds": args.rounds,
        },
        "rows": rows,
    }
    console.print(f"wrote {write_record(record, args.out, 'loaders')}")
    return 0


def data_stages(args) -> int:
    import torch

    from menagerie.harness import provenance
    from menagerie.models.data import convert, loader_stages
    from menagerie.models.data.loaders import LOADERS

    chosen = args.loader or list(LOADERS)
    with console.status("profiling loaders") as status:
        stages = loader_stages.profile(
            args.root,
            chosen,
            args.size,
            args.batch_size,
            args.images,
            args.rounds,
            on_loader=lambda loader: status.update(f"profiling {loader}"),
        )
    table = Table(
        title=f"loader stages at {args.size} px, one core (ms per image, batch {args.batch_size}, "
        f"{args.images} images per measurement, fastest of {args.rounds} rounds)"
    )
    for column in ("loader", "stage", "ms/image", "share"):
        table.add_column(column, justify="left" if column in ("loader", "stage") else "right")
    totals = {loader: sum(stage.ms_per_image for stage in stages if stage.loader == loader) for loader in chosen}
    for loader in chosen:
        for stage in (stage for stage in stages if stage.loader == loader):
            table.add_row(
                loader, stage.stage, f"{stage.ms_per_image:.3f}", f"{stage.ms_per_image / totals[loader]:.0%}"
            )
        table.add_row(
            loader,
            "[bold]total[/]",
            f"[bold]{totals[loader]:.3f}[/]",
            f"{1e3 / totals[loader]:,.0f} img/s",
            end_section=True,
        )
    console.print(table)
    storage = convert.beton_storage(args.root / "train.beton") if "ffcv" in chosen else None
    record = {
        "provenance": provenance.collect(torch.device("cpu")),
        "benchmark": "loaders.stages",
        "config": {
            "root": str(args.root),
            "size": args.size,
            "batch_size": args.batch_size,
            "images": args.images,
            "rounds": args.rounds,
            "ffcv_storage": storage,
        },
        "rows": [stage.to_dict() for stage in stages],
    }
    console.print(f"wrote {write_record(record, args.out, 'loader-stages')}")
    return 0
