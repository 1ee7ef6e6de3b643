"""``menagerie data``: synthetic or digits image folders, FFCV conversion and the loaders' throughput."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from harness import provenance
from harness.cli.common import UsageError, console, positive, progress_bar, requested_device, write_record
from models.data.loaders import LOADERS


def add_parser(commands) -> None:
    data = commands.add_parser("data", help="datasets: synthetic or digits image folders, FFCV conversion, loader speed")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    synth = data_commands.add_parser("synth", help="write a synthetic JPEG dataset: OUT/train and OUT/val image folders")
    synth.add_argument("out", type=Path, help="dataset root to create")
    synth.add_argument("--classes", type=positive(int), default=10, help="number of classes")
    synth.add_argument("--train-per-class", type=positive(int), default=100, help="training images per class")
    synth.add_argument("--val-per-class", type=positive(int), default=20, help="validation images per class")
    synth.add_argument("--size", type=positive(int), default=256, help="image side, pixels")
    synth.add_argument("--seed", type=int, default=0, help="random seed")
    digits = data_commands.add_parser("digits", help="write scikit-learn's 8x8 digits, upsampled, as OUT/train and OUT/val")
    digits.add_argument("out", type=Path, help="dataset root to create")
    digits.add_argument("--size", type=positive(int), default=16, help="image side after upsampling, pixels")
    to_ffcv = data_commands.add_parser("to-ffcv", help="convert an image folder to an FFCV .beton file")
    to_ffcv.add_argument("image_folder", type=Path, help="ROOT/<class>/<image> folder")
    to_ffcv.add_argument("out", type=Path, help="the .beton file to write")
    to_ffcv.add_argument("--max-resolution", type=positive(int), help="cap the longer image side (default: keep)")
    to_ffcv.add_argument("--jpeg-quality", type=positive(int), default=90, help="JPEG quality of the stored images")
    to_ffcv.add_argument("--workers", type=positive(int), default=4, help="writer processes")
    speed = data_commands.add_parser("throughput", help="img/s of the loaders on ROOT/train (and ROOT/train.beton)")
    speed.add_argument("root", type=Path, help="dataset root holding train/ and train.beton")
    speed.add_argument("--loader", action="append", choices=LOADERS, default=[], help="loader (repeatable; default all)")
    speed.add_argument("--size", action="append", type=positive(int), default=[],
                       help="output image side (repeatable; default 224 and 32)")
    speed.add_argument("--batch-size", type=positive(int), default=256, help="images per batch")
    speed.add_argument("--workers", type=positive(int), default=4, help="worker processes or threads per loader")
    speed.add_argument("--batches", type=positive(int), default=50, help="timed batches per loader and size")
    speed.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    speed.add_argument("--out", type=Path, default=Path("results") / "loaders", help="folder for the record")
    data.set_defaults(func=cmd_data)


def cmd_data(args) -> int:
    from models.data import convert, folders

    try:
        if args.data_command == "synth":
            with progress_bar() as progress:
                for split, per_class, seed in (("train", args.train_per_class, args.seed),
                                               ("val", args.val_per_class, args.seed + 1)):
                    bar = progress.add_task(f"writing {split}", total=args.classes * per_class)
                    folders.write_synthetic(args.out / split, args.classes, per_class, args.size, seed=seed,
                                            progress=lambda done: progress.update(bar, completed=done))
            console.print(f"wrote {args.classes * (args.train_per_class + args.val_per_class)} images "
                          f"({args.size}x{args.size}, {args.classes} classes) under {args.out}/train and val")
        elif args.data_command == "digits":
            counts = folders.write_digits(args.out, size=args.size)
            console.print(f"wrote {counts[0]} training and {counts[1]} validation digits ({args.size}x{args.size}) "
                          f"under {args.out}")
        elif args.data_command == "to-ffcv":
            with console.status(f"writing {args.out}"):
                count = convert.to_ffcv(args.image_folder, args.out, max_resolution=args.max_resolution,
                                        jpeg_quality=args.jpeg_quality, workers=args.workers)
            console.print(f"wrote {count} images to {args.out}")
        else:
            return data_throughput(args)
    except ValueError as error:  # includes DataError
        raise UsageError(str(error)) from None
    return 0


def data_throughput(args) -> int:
    from benchmarks import loaders as loader_bench

    device = requested_device(args.device)
    chosen = args.loader or list(loader_bench.LOADERS)
    sizes = args.size or [224, 32]
    table = Table(title=f"loader throughput on {device} ({args.workers} workers, batch {args.batch_size})")
    for column in ("loader", "size", "batches", "img/s"):
        table.add_column(column, justify="left" if column == "loader" else "right")
    with console.status("measuring loaders") as status:
        results = loader_bench.measure(args.root, chosen, sizes, args.batch_size, args.workers, args.batches,
                                       device, on_result=lambda r: status.update(f"measured {r.loader} at {r.size}"))
    for result in results:
        table.add_row(result.loader, str(result.size), str(result.batches), f"{result.images_per_s:,.0f}")
    console.print(table)
    record = {"provenance": provenance.collect(device), "benchmark": "loaders.throughput",
              "config": {"root": str(args.root), "batch_size": args.batch_size, "workers": args.workers},
              "rows": [result.to_dict() for result in results]}
    console.print(f"wrote {write_record(record, args.out, 'loaders')}")
    return 0
