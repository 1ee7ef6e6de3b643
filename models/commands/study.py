"""``menagerie study sinks``: windowed attention with sink tokens inside all-MiniLM-L6-v2, against dense."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from rich.table import Table

from menagerie.harness import provenance
from menagerie.harness.cli.common import UsageError, console, positive
from menagerie.harness.device import default_device
from menagerie.harness.results import write_json_atomically


def add_parser(commands) -> None:
    study = commands.add_parser("study", help="studies on real models (sinks: windowed attention in MiniLM)")
    study.add_argument("study", choices=["sinks"], help="which study")
    study.add_argument("--windows", type=window_list, default=[2, 4, 8, 16, 32, 64],
                       help="comma-separated windows (keys each side), e.g. 2,8,32")
    study.add_argument("--sinks", type=window_list, default=[0, 1], help="comma-separated sink counts")
    study.add_argument("--texts", type=positive(int), default=16, help="paragraphs of real text to embed")
    study.add_argument("--max-tokens", type=positive(int), default=256, help="truncate paragraphs to this length")
    study.add_argument("--backend", choices=["triton", "reference"],
                       help="attention used inside the model (default: triton on a GPU, reference on the CPU)")
    study.add_argument("--out", type=Path, default=Path("results") / "studies" / "sinks",
                       help="folder for sinks.json and sinks.png")
    study.set_defaults(func=cmd_study)


def window_list(text: str) -> list[int]:
    """An argparse type: comma-separated non-negative integers."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def cmd_study(args) -> int:
    from menagerie.models import minilm_sinks

    backend = args.backend or ("triton" if torch.cuda.is_available() else "reference")
    try:
        with console.status("sink study: loading all-MiniLM-L6-v2") as status:
            study = minilm_sinks.run_study(windows=args.windows, sinks=args.sinks, texts=args.texts,
                                           max_tokens=args.max_tokens, backend=backend,
                                           progress=lambda message: status.update(f"sink study: {message}"))
    except RuntimeError as error:
        raise UsageError(str(error)) from None
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"provenance": provenance.collect(default_device()), "study": dataclasses.asdict(study)}
    write_json_atomically(record, args.out / "sinks.json")
    plot = minilm_sinks.plot_study(study, args.out / "sinks.png")

    table = Table(title=f"all-MiniLM-L6-v2: cosine similarity of windowed to dense embeddings "
                        f"({study.texts} paragraphs, mean {study.tokens_mean:.0f} tokens, {backend} attention)")
    table.add_column("window", justify="right")
    for key in study.cosine_mean:
        table.add_column(f"{key} mean", justify="right")
        table.add_column(f"{key} min", justify="right")
    for index, window in enumerate(study.windows):
        cells = []
        for key in study.cosine_mean:
            cells += [f"{study.cosine_mean[key][index]:.4f}", f"{study.cosine_min[key][index]:.4f}"]
        table.add_row(str(window), *cells)
    console.print(table)
    shares = Table(title="dense model: mean attention probability on token 0 ([CLS]) per layer")
    shares.add_column("layer", justify="right")
    shares.add_column("share on token 0", justify="right")
    shares.add_column("uniform share", justify="right")
    for layer, share in enumerate(study.first_token_share, 1):
        shares.add_row(str(layer), f"{share:.3f}", f"{study.uniform_share:.3f}")
    console.print(shares)
    console.print(f"wrote {args.out / 'sinks.json'} and {plot}")
    return 0
