"""``menagerie merge``: join the records of a sharded run (``run --shard K/N``) into one run record."""

from __future__ import annotations

from pathlib import Path

from menagerie.harness import shards
from menagerie.harness.cli.common import UsageError, console
from menagerie.harness.cli.compare import load_side
from menagerie.harness.results import DEFAULT_RUNS_DIR, write_run

# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "merge": "join the shard records of one run (run --shard K/N) into one record",
}


def add_parser(commands) -> None:
    merge = commands.add_parser("merge", help=COMMANDS["merge"])
    merge.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="shard records, or folders of them (other files are passed over with a warning)",
    )
    merge.add_argument("--out", type=Path, default=DEFAULT_RUNS_DIR, help="folder (or .json path) for the record")
    merge.add_argument(
        "--allow-partial",
        action="store_true",
        help="merge the shards that are there when some are missing, and mark the record partial",
    )
    merge.set_defaults(func=cmd_merge)


def cmd_merge(args) -> int:
    records = [record for path in args.paths for record in load_side(path, "shards")]
    try:
        merged = shards.merge(records, allow_partial=args.allow_partial)
    except shards.ShardError as error:
        raise UsageError(str(error)) from None
    path = write_run(merged, args.out)
    done = merged["config"]["merged_shards"]
    count = done["count"]
    missing = (
        f"; missing {', '.join(f'{index}/{count}' for index in done['missing'])} (partial)" if done["missing"] else ""
    )
    console.print(f"merged {len(done['merged'])} of {count} shards, {len(merged['rows'])} rows{missing}")
    console.print(f"wrote {path}")
    return 0
