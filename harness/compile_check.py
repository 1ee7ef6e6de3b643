"""``menagerie compile``: build every Triton kernel the benchmarks launch, for GPU architectures, on any machine.

For each architecture a fresh worker process (``python -m menagerie.harness.compile_check``; Triton
binds a kernel's target on its first call, and the kernels must be imported with the
interpreter off) activates the compile-only driver (``harness/compile_driver.py``) and
drives the call paths that ``menagerie run`` times: every implementation marked
``triton=True``, every case of the size preset, every dtype the benchmark claims, every
mode it declares (``Prepared(...).step()``, forward and backward), on CPU tensors; torch's GEMMs and
convolutions on that path only allocate their outputs (``harness/shapes_only.py``), since the kernels'
launches compute nothing either. The autotuner compiles every configuration it may pick.

Verdicts, each a failure (exit 1): a call path that raised (a kernel that does not
compile, or code that broke); a configuration that does not compile, or whose shared
memory or threads exceed the arch's limits (even where an autotuner would skip it: prune
it per arch instead); a kernel specialization (kernel, arch, dtypes, constexprs) for
which no configuration is spill-free; a spot-checked unit whose fresh build differs from
its record entry.

Incremental: each worker is given its arch's compile record (``harness/compile_record.py``)
and compiles only the units the record lacks; the others are replayed from their entries,
so the verdicts cover every unit either way. A spot check then compiles a random share of
the replayed units again (at least one per kernel, seeded) and compares: a difference
means the fingerprint misses an input or the toolchain is not deterministic.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from menagerie.harness import compile_record
from menagerie.harness.compile_record import specialization_label
from menagerie.harness.gpu_archs import ARCHS, Arch
from menagerie.harness.results import write_json_atomically
from menagerie.harness.shapes_only import shapes_only


def _last_line(error: BaseException) -> str:
    """Triton's compile errors end with the message, after the source listing."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1].strip() if lines else ''}"[:400]


def group_id(build: dict) -> str:
    return f"{build['kernel']}[{specialization_label(build['specialization'])}]@{build['arch']}"


# ----------------------------------------------------------------------------------------------
# The worker: one architecture, in its own process
# ----------------------------------------------------------------------------------------------


def compile_plan(benchmarks, size: str, dtypes: list[str], modes: list[str]) -> list[tuple]:
    """``(benchmark, case, dtype, mode, impl)`` of every Triton row a GPU run would time: a row that the
    implementation skips on a CUDA device (a case it does not apply to) is not compiled either."""
    from menagerie.harness.runner import dtype_name

    cuda = torch.device("cuda")
    plan = []
    for bench in benchmarks:
        impls = [impl for impl in bench.impls if impl.triton]
        chosen_dtypes = [d for d in bench.dtypes if not dtypes or dtype_name(d) in dtypes]
        chosen_modes = [m for m in bench.modes if not modes or m in modes]
        for case in bench.cases.get(size, ()):
            for dtype in chosen_dtypes:
                for mode in chosen_modes:
                    plan.extend(
                        (bench, case, dtype, mode, impl)
                        for impl in impls
                        if not (impl.skip_reason and impl.skip_reason(case, cuda, dtype, mode))
                    )
    return plan


def drive(
    benchmarks,
    size: str,
    dtypes: list[str],
    modes: list[str],
    recorder,
    on_row: Callable[[int, int, str], None] = lambda done, total, label: None,
) -> list[dict]:
    """Run every Triton row's call path once under the active compile-only driver."""
    from menagerie.harness.runner import Prepared, dtype_name

    plan = compile_plan(benchmarks, size, dtypes, modes)
    rows = []
    for done, (bench, case, dtype, mode, impl) in enumerate(plan):
        label = f"{bench.name} {case.name} {dtype_name(dtype)} {mode} {impl.name}"
        on_row(done, len(plan), label)
        first = len(recorder.launched)
        error = ""
        try:
            with shapes_only():
                inputs = bench.make_inputs(case, dtype, torch.device("cpu"), 0)
                Prepared(bench, impl, inputs, mode, 0).step()
        except Exception as exc:  # a kernel that does not compile, or a call path that broke
            error = _last_line(exc)
        position = {id(build): index for index, build in enumerate(recorder.builds)}
        launched = dict.fromkeys(position[id(build)] for build in recorder.launched[first:])
        rows.append(
            {
                "benchmark": bench.name,
                "case": case.name,
                "params": dict(case.params),
                "dtype": dtype_name(dtype),
                "mode": mode,
                "impl": impl.name,
                "arch": recorder.arch.name,
                "error": error,
                "launched": list(launched),
            }
        )
    for bench in benchmarks:  # CUDA C: one program per dtype, whatever the case
        for impl in (impl for impl in bench.impls if impl.cuda_c):
            for dtype in (d for d in bench.dtypes if not dtypes or dtype_name(d) in dtypes):
                builds = recorder.add_cuda_c(impl.cuda_c(dtype))
                rows.append(
                    {
                        "benchmark": bench.name,
                        "case": "*",
                        "params": {},
                        "dtype": dtype_name(dtype),
                        "mode": "*",
                        "impl": impl.name,
                        "arch": recorder.arch.name,
                        "error": "",
                        "launched": [recorder.builds.index(build) for build in builds],
                    }
                )
    on_row(len(plan), len(plan), "done")
    return rows


def choose_spot_checks(entries: dict[str, dict], replayed: list[str], fraction: float, seed: str) -> list[str]:
    """``fraction`` of the replayed units, at least one per kernel (none if ``fraction`` is 0), drawn with ``seed``."""
    if fraction <= 0 or not replayed:
        return []
    rng = random.Random(seed)
    by_kernel: dict[str, list[str]] = {}
    for fingerprint in sorted(replayed):
        by_kernel.setdefault(entries[fingerprint]["kernel"], []).append(fingerprint)
    chosen = [rng.choice(fingerprints) for _, fingerprints in sorted(by_kernel.items())]
    rest = sorted(set(replayed) - set(chosen))
    rng.shuffle(rest)
    return chosen + rest[: max(0, math.ceil(fraction * len(replayed)) - len(chosen))]


def _worker(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m menagerie.harness.compile_check")
    parser.add_argument("names", nargs="*")
    parser.add_argument("--arch", required=True, choices=list(ARCHS))
    parser.add_argument("--size", required=True)
    parser.add_argument("--dtype", action="append", default=[])
    parser.add_argument("--mode", action="append", default=[])
    parser.add_argument("--import", dest="imports", action="append", default=[])
    parser.add_argument("--record", type=Path, help="compile record whose units are replayed, not compiled")
    parser.add_argument("--spot-check", type=float, default=0.0)
    parser.add_argument("--seed", default="0")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("compile worker: TRITON_INTERPRET=1 is set; compiling needs it off")
    os.environ["TRITON_INTERPRET"] = "0"  # before any kernel module is imported

    from menagerie.harness import registry
    from menagerie.harness.compile_driver import compile_only

    known = compile_record.load(args.record) if args.record else {}
    with compile_only(ARCHS[args.arch], known) as recorder:
        for module in args.imports:
            importlib.import_module(module)
        benchmarks = registry.select(args.names)
        progress = lambda done, total, label: print(  # noqa: E731
            json.dumps({"done": done, "total": total, "row": label}), flush=True
        )
        rows = drive(benchmarks, args.size, args.dtype, args.mode, recorder, progress)
        chosen = choose_spot_checks(known, list(recorder.rebuild), args.spot_check, f"{args.seed}:{args.arch}")
        spot_checks = []
        for done, fingerprint in enumerate(chosen):
            progress(done, len(chosen), f"spot check {known[fingerprint]['kernel']}")
            spot_checks += recorder.spot_check([fingerprint])
    builds = [build.to_dict() for build in recorder.builds]
    write_json_atomically({"arch": args.arch, "rows": rows, "builds": builds, "spot_checks": spot_checks}, args.out)
    return 0


# ----------------------------------------------------------------------------------------------
# The parent: workers per architecture, verdicts
# ----------------------------------------------------------------------------------------------


@dataclass
class CompileReport:
    archs: list[Arch]
    rows: list[dict] = field(default_factory=list)  # call paths, per arch
    builds: list[dict] = field(default_factory=list)
    groups: dict[str, list[int]] = field(default_factory=dict)  # group id -> indices into builds
    spot_checks: list[dict] = field(default_factory=list)  # replayed units compiled again, with their differences
    failures: list[str] = field(default_factory=list)

    def units(self, arch: str) -> dict[str, dict]:
        """This run's units for ``arch`` as record entries, by fingerprint (failed compiles have none)."""
        return {
            build["fingerprint"]: compile_record.entry_of(build)
            for build in self.builds
            if build["arch"] == arch and build["fingerprint"]
        }

    def compiled(self) -> list[dict]:
        """The builds compiled in this run (not replayed from the record), one per unit."""
        return list(
            {
                build["fingerprint"] or id(build): build for build in self.builds if build["origin"] == "compiled"
            }.values()
        )

    def to_dict(self) -> dict:
        return {
            "archs": [arch.to_dict() for arch in self.archs],
            "rows": self.rows,
            "builds": self.builds,
            "groups": self.groups,
            "spot_checks": self.spot_checks,
            "failures": self.failures,
        }


def chosen_build(builds: list[dict]) -> dict | None:
    """The configuration an autotuner would settle on here: the first spill-free one (the
    benchmarker ranks spill-free first), else the first that compiled."""
    usable = [b for b in builds if not b["error"]]
    spill_free = [b for b in usable if b["spills"] is False]
    return (spill_free or usable or [None])[0]


def judge(report: CompileReport) -> None:
    """Group the builds and list every failure (see the module docstring)."""
    for index, build in enumerate(report.builds):
        report.groups.setdefault(group_id(build), []).append(index)
    for build in report.builds:
        if build["error"]:
            report.failures.append(f"{group_id(build)} {_config_label(build['config'])}: {build['error']}")
    for gid, members in report.groups.items():
        builds = [report.builds[i] for i in members]
        if builds[0]["specialization"].get("failed"):
            continue  # a configuration that failed to compile, reported above
        if all(b["error"] for b in builds):
            continue  # nothing compiled: each error is reported above
        if not any(b["spills"] is False and not b["error"] for b in builds):
            report.failures.append(f"{gid}: no configuration is spill-free ({len(builds)} compiled)")
    for check in report.spot_checks:
        if check["differences"]:
            report.failures.append(
                f"spot check: {check['kernel']}@{check['arch']} {_config_label(check['config'])} "
                f"(unit {check['fingerprint']}) differs from its record entry ({'; '.join(check['differences'])}): "
                f"the fingerprint misses an input or the toolchain is not deterministic"
            )
    for row in report.rows:
        if row["error"]:
            report.failures.append(
                f"{row['arch']} {row['benchmark']} {row['case']} {row['dtype']} {row['mode']} "
                f"{row['impl']}: {row['error']}"
            )
        elif not row["launched"]:
            report.failures.append(
                f"{row['arch']} {row['benchmark']} {row['case']} {row['dtype']} {row['mode']} "
                f"{row['impl']}: launched no Triton kernel (is triton=True right?)"
            )


def _config_label(config: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in config.items())


def check(
    names: list[str],
    archs: list[Arch],
    size: str,
    dtypes: list[str] = (),
    modes: list[str] = (),
    imports: list[str] = (),
    jobs: int | None = None,
    records: dict[str, Path] | None = None,
    spot_check: float = 0.0,
    seed: str = "0",
    on_progress: Callable[[str, int, int, str], None] = lambda arch, done, total, row: None,
) -> CompileReport:
    """Compile for every arch (workers in parallel, ``jobs`` at a time) and judge the builds.

    ``records``: per arch name, the compile record whose units are replayed rather than compiled;
    ``spot_check`` of them (at least one per kernel) are compiled again, drawn with ``seed``."""
    records = records or {}
    jobs = jobs or max(1, min(len(archs), os.cpu_count() or 1))
    results: dict[str, dict] = {}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as scratch:

        def work(arch: Arch) -> None:
            out = Path(scratch) / f"{arch.name}.json"
            command = [
                sys.executable,
                "-m",
                "menagerie.harness.compile_check",
                *names,
                "--arch",
                arch.name,
                "--size",
                size,
                "--out",
                str(out),
            ]
            for flag, values in (("--dtype", dtypes), ("--mode", modes), ("--import", imports)):
                for value in values:
                    command += [flag, value]
            if arch.name in records:
                command += ["--record", str(records[arch.name]), "--spot-check", str(spot_check), "--seed", seed]
            # A fresh Triton cache: what is compiled is compiled, never loaded from an earlier run's cache.
            env = {
                **os.environ,
                "TRITON_INTERPRET": "0",
                "TRITON_CACHE_DIR": str(Path(scratch) / f"cache-{arch.name}"),
                "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs)),
            }
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            stderr = []
            reader = threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True)
            reader.start()
            for line in process.stdout:
                try:
                    update = json.loads(line)
                    on_progress(arch.name, update["done"], update["total"], update["row"])
                except (ValueError, KeyError):
                    pass
            process.wait()
            reader.join()
            if process.returncode or not out.exists():
                tail = "".join(stderr).strip().splitlines()[-15:]
                errors[arch.name] = f"worker exited with {process.returncode}:\n" + "\n".join(tail)
            else:
                results[arch.name] = json.loads(out.read_text())

        pending = list(archs)
        while pending:
            batch, pending = pending[:jobs], pending[jobs:]
            threads = [threading.Thread(target=work, args=(arch,)) for arch in batch]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

    report = CompileReport(archs=list(archs))
    for arch in archs:
        if arch.name in errors:
            report.failures.append(f"{arch.name}: {errors[arch.name]}")
            continue
        result = results[arch.name]
        offset = len(report.builds)
        report.builds.extend(result["builds"])
        for row in result["rows"]:
            row["launched"] = [offset + index for index in row["launched"]]
            report.rows.append(row)
        report.spot_checks.extend(result["spot_checks"])
    judge(report)
    return report


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
