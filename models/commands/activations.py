"""``menagerie activations``: hook a model's layer and write its activations as shards, for SAE training."""

from __future__ import annotations

from pathlib import Path

from rich.progress import Progress, TextColumn, TimeElapsedColumn

from menagerie.harness.cli.common import UsageError, console, positive, requested_device

# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "activations": "hook a model's layer and write its activations as shards",
}


def add_parser(commands) -> None:
    acts = commands.add_parser("activations", help=COMMANDS["activations"])
    acts.add_argument(
        "--model",
        default="minilm",
        help="'minilm' (all-MiniLM-L6-v2, shipped offline) or 'package.module:function' returning "
        "a torch.nn.Module or a (module, tokenizer) pair",
    )
    acts.add_argument(
        "--layer", default="encoder.layer.3", help="name of the submodule to hook (model.named_modules())"
    )
    source = acts.add_mutually_exclusive_group()
    source.add_argument(
        "--text",
        type=Path,
        help="a UTF-8 text file, one paragraph per blank-line-separated block "
        "(default: the Python language reference shipped with Python)",
    )
    source.add_argument(
        "--tensors", type=Path, help="model inputs saved with torch.save (or .npy), batched along dim 0"
    )
    acts.add_argument("--out", type=Path, required=True, help="folder for the shards and manifest.json (must be new)")
    acts.add_argument("--batch-size", type=positive(int), default=32, help="inputs per forward")
    acts.add_argument("--max-tokens", type=positive(int), default=256, help="truncate texts to this many tokens")
    acts.add_argument("--max-rows", type=positive(int), help="stop after this many activation rows")
    acts.add_argument("--shard-rows", type=positive(int), default=65536, help="rows per shard file")
    acts.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32", help="storage dtype")
    acts.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    acts.set_defaults(func=cmd_activations)


def cmd_activations(args) -> int:
    import torch

    from menagerie.models import activation_sources
    from menagerie.models.activations import collect_activations

    device = requested_device(args.device)
    try:
        with console.status(f"loading {args.model}"):
            model, tokenizer = activation_sources.load_model(args.model)
        model.to(device)
        if args.tensors:
            batches = activation_sources.tensor_batches(args.tensors, args.batch_size)
        else:
            if tokenizer is None:
                raise UsageError(f"{args.model} returned no tokenizer: give --tensors, or return (module, tokenizer)")
            if args.text:
                if not args.text.is_file():
                    raise UsageError(f"--text: no such file {args.text}")
                texts = [block.strip() for block in args.text.read_text().split("\n\n") if block.strip()]
            else:
                texts = activation_sources.python_docs_paragraphs()
            if not texts:
                raise UsageError("the text has no paragraphs")
            batches = activation_sources.text_batches(tokenizer, texts, args.batch_size, args.max_tokens)
        with Progress(
            TextColumn("activations"),
            TextColumn("{task.completed:,} rows"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("rows", total=None)
            manifest = collect_activations(
                model,
                args.layer,
                batches,
                args.out,
                model_name=args.model,
                dtype=torch.float16 if args.dtype == "fp16" else torch.float32,
                shard_rows=args.shard_rows,
                max_rows=args.max_rows,
                on_batch=lambda rows: progress.update(task, completed=rows),
            )
    except (ValueError, FileExistsError, TypeError) as error:
        raise UsageError(str(error)) from None
    console.print(
        f"wrote {manifest.count:,} rows of {manifest.layer} ({manifest.dim} wide, {manifest.dtype}) "
        f"in {len(manifest.shards)} shard(s) to {args.out}"
    )
    return 0
