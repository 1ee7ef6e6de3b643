"""``menagerie study sinks``: windowed attention with sink tokens inside all-MiniLM-L6-v2, against dense."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.table import Table

from menagerie.harness.cli.common import UsageError, console, positive
from menagerie.harness.results import write_json_atomically

SINK_SET_NAMES = ("none", "cls", "cls+sep", "cls+sep+punct")  # minilm_sinks.SINK_SETS, without importing the model


# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "study": "studies on real models (sinks: windowed attention in MiniLM)",
}


def add_parser(commands) -> None:
    study = commands.add_parser("study", help=COMMANDS["study"])
    study.add_argument("study", choices=["sinks"], help="which study")
    study.add_argument(
        "--windows",
        type=integer_list,
        default=[4, 16, 64],
        help="comma-separated windows (keys each side), e.g. 2,8,32 (default: 4,16,64)",
    )
    study.add_argument(
        "--sinks",
        type=sink_sets,
        default=list(SINK_SET_NAMES),
        help=f"comma-separated sink sets, of {', '.join(SINK_SET_NAMES)} (default: all)",
    )
    study.add_argument(
        "--dense-layers",
        type=integer_list,
        action="append",
        metavar="LAYERS",
        help="layers (from 0) kept dense while the others are windowed, e.g. 0,5; repeatable, each "
        "one more row of the grid beside no dense layer (default: 0 and 0,5)",
    )
    study.add_argument("--texts", type=positive(int), default=16, help="paragraphs whose embeddings are compared")
    study.add_argument(
        "--corpus",
        type=positive(int),
        help="paragraphs in the retrieval task (default: every standard-library paragraph)",
    )
    study.add_argument("--boots", type=positive(int), default=1000, help="bootstrap resamples of the queries")
    study.add_argument("--max-tokens", type=positive(int), default=256, help="truncate paragraphs to this length")
    study.add_argument(
        "--backend",
        choices=["triton", "reference"],
        help="attention used inside the model (default: triton on a GPU, reference on the CPU)",
    )
    study.add_argument(
        "--out", type=Path, default=Path("results") / "studies" / "sinks", help="folder for sinks.json and sinks.png"
    )
    study.set_defaults(func=cmd_study)


def integer_list(text: str) -> list[int]:
    """An argparse type: comma-separated non-negative integers."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def sink_sets(text: str) -> list[str]:
    """An argparse type: comma-separated sink set names."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in SINK_SET_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected sink sets of {', '.join(SINK_SET_NAMES)}, got {text!r}")
    return names


def _interval(values: list[float], digits: int = 3) -> str:
    return f"{values[0]:.{digits}f} ({values[1]:.{digits}f}–{values[2]:.{digits}f})"


def cmd_study(args) -> int:
    import torch

    from menagerie.harness import provenance
    from menagerie.harness.device import default_device
    from menagerie.models import minilm_sinks

    backend = args.backend or ("triton" if torch.cuda.is_available() else "reference")
    dense_sets = [()] + [tuple(layers) for layers in (args.dense_layers or [[0], [0, 5]])]
    try:
        with console.status("sink study: loading all-MiniLM-L6-v2") as status:
            study = minilm_sinks.run_study(
                windows=args.windows,
                sinks=args.sinks,
                dense_layer_sets=dense_sets,
                texts=args.texts,
                corpus=args.corpus,
                max_tokens=args.max_tokens,
                backend=backend,
                boots=args.boots,
                progress=lambda message: status.update(f"sink study: {message}"),
            )
    except (RuntimeError, ValueError) as error:
        raise UsageError(str(error)) from None
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"provenance": provenance.collect(default_device()), "study": dataclasses.asdict(study)}
    write_json_atomically(record, args.out / "sinks.json")
    plot = minilm_sinks.plot_study(study, args.out / "sinks.png")

    shares = Table(
        title="dense model: mean share of a query's attention on each key class (mean over heads), "
        "beside the class's share of the tokens"
    )
    shares.add_column("layer", justify="right")
    for name in study.token_classes:
        shares.add_column(name, justify="right")
    for layer, heads in enumerate(study.class_shares):
        shares.add_row(
            str(layer),
            *(f"{sum(head[index] for head in heads) / len(heads):.3f}" for index in range(len(study.token_classes))),
        )
    shares.add_row("uniform", *(f"{study.uniform_shares[name]:.3f}" for name in study.token_classes))
    console.print(shares)
    dense = study.dense_retrieval
    table = Table(
        title=f"all-MiniLM-L6-v2 ({backend} attention): cosine to the dense embeddings ({study.texts} "
        f"paragraphs, mean {study.tokens_mean:.0f} tokens) and retrieval over {study.corpus} "
        f"documents, 95% bootstrap CI; dense: R@1 {_interval(dense['recall@1'])}, "
        f"R@10 {_interval(dense['recall@10'])}, MRR {_interval(dense['mrr'])}"
    )
    for column in (
        "dense layers",
        "sinks",
        "window",
        "path",
        "cosine mean",
        "cosine min",
        "R@1",
        "R@10",
        "MRR",
        "within dense's noise",
    ):
        table.add_column(column, justify="left" if column in ("sinks", "path", "within dense's noise") else "right")
    for row in study.rows:
        within = [name for name, inside in row["within_dense_ci"].items() if inside]
        table.add_row(
            ",".join(map(str, row["dense_layers"])) or "none",
            row["sinks"],
            str(row["window"]),
            row["path"],
            f"{row['cosine_mean']:.4f}",
            f"{row['cosine_min']:.4f}",
            *(_interval(row["retrieval"][name]) for name in minilm_sinks.METRICS),
            ", ".join(within) or "no",
        )
    console.print(table)
    console.print("within dense's noise: the metrics whose paired bootstrap 95% CI of (configuration - dense) holds 0")
    console.print(f"wrote {args.out / 'sinks.json'} and {plot}")
    return 0
