"""``menagerie env``: the device, the software versions and the measured ceilings."""

from __future__ import annotations

from rich.table import Table

from menagerie.harness import registry
from menagerie.harness.cli.common import console, requested_device
from menagerie.harness.registry import dtype_name

# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "env": "device, versions and measured ceilings",
}


def add_parser(commands) -> None:
    env = commands.add_parser("env", help=COMMANDS["env"])
    env.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    env.add_argument(
        "--dtype",
        action="append",
        choices=sorted(registry.DTYPES),
        default=[],
        help="matmul dtype for the ceiling (repeatable)",
    )
    env.add_argument("--remeasure", action="store_true", help="measure the ceilings again instead of using the cache")
    env.set_defaults(func=cmd_env)


def cmd_env(args) -> int:
    import torch

    from menagerie.harness import ceilings, provenance

    device = requested_device(args.device)
    info = provenance.collect(device)
    table = Table(title="menagerie environment", show_header=False)
    for key in ("device", "cpu", "cpu_count", "platform", "python", "torch", "triton", "cuda", "driver"):
        table.add_row(key, str(info[key]))
    git = info["git"]
    table.add_row("source", f"{git['sha'] or 'not a git checkout'}{' (dirty)' if git['dirty'] else ''}")
    dtypes = [registry.torch_dtype(name) for name in args.dtype] or [
        torch.bfloat16 if device.type == "cuda" else torch.float32
    ]
    for dtype in dict.fromkeys(dtypes):
        with console.status(f"measuring ceilings ({dtype_name(dtype)})"):
            found = ceilings.get_ceilings(device, dtype, remeasure=args.remeasure)
        for name, ceiling in found.items():
            table.add_row(
                f"{name} ({dtype_name(dtype)})" if name == "matmul_tflops" else name,
                f"{ceiling.value:.4g} {ceiling.unit} [{ceiling.source}] {ceiling.detail}",
            )
    table.add_row("ceilings cache", str(ceilings.cache_path()))
    console.print(table)
    return 0
