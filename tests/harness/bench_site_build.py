"""How long ``menagerie site`` takes on a large synthetic history: ``make bench-site`` (or
``python -m tests.harness.bench_site_build [--runs 1000] [--rows 300]`` from the checkout).

Writes the history into a temporary folder, then times three builds: cold (no index, no site), again
with nothing changed, and after one more run. Prints what it measured and on what machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from menagerie.harness import site
from menagerie.harness.provenance import cpu_name
from tests.harness.synthetic_history import synthetic_run, write_history


def timed(label: str, build) -> site.SiteResult:
    start = time.perf_counter()
    built = build()
    print(
        f"{label:<22} {time.perf_counter() - start:7.1f} s  {len(built.written):5d} files written, "
        f"{len(built.unchanged):5d} unchanged",
        flush=True,
    )
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--benchmarks", type=int, default=30)
    args = parser.parse_args()
    print(
        f"menagerie site on {args.runs} runs x {args.rows} rows ({args.benchmarks} benchmarks); "
        f"{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        runs, out = Path(scratch) / "runs", Path(scratch) / "site"
        start = time.perf_counter()
        write_history(runs, args.runs, rows=args.rows, benchmarks=args.benchmarks)
        print(f"{'history written':<22} {time.perf_counter() - start:7.1f} s", flush=True)
        timed("cold build", lambda: site.build([runs], out))
        timed("nothing changed", lambda: site.build([runs], out))
        (runs / "one-more.json").write_text(
            json.dumps(synthetic_run(args.runs, rows=args.rows, benchmarks=args.benchmarks))
        )
        timed("after one more run", lambda: site.build([runs], out))


if __name__ == "__main__":
    main()
