"""Runs benchmarks: for each (benchmark, case, dtype, mode) and implementation,
check accuracy first, then time, then derive throughput and roofline.

Accuracy is checked on ``seeds`` fresh inputs against the reference
implementation run in float64 (float32 inputs) or float32 (half-precision
inputs), with every output allocation poisoned. Timing uses the inputs of the
first seed, each implementation its own copy. A failing implementation is still timed,
and its row says so. After timing, each timed implementation is checked once more
(``menagerie.harness.recheck``): its timed inputs against the pristine ones, and its
outputs on new values in the same tensors against the reference's.

The implementations of one case are timed together: each is checked and warmed up
(the configurations its Triton autotuners chose are recorded), then all take turns
block by block over the budget (``menagerie.harness.timing.interleave``), so they stay bound
to their inputs at once until the case is done. On a GPU the device's clocks,
temperature and power are read after each case (``provenance.gpu_state``).

A record from ``run`` is one process-level replicate (schema 2): per row, the
samples, ``replicate_medians_s`` (one entry), and per replicate the calls each
sample spans and the autotune choices. ``menagerie.harness.replicates`` merges the records of
several processes into one.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from menagerie.harness import accuracy, ceilings, provenance, recheck, shards, stats, throttle
from menagerie.harness.autotune import chosen_configs
from menagerie.harness.registry import Benchmark, Case, Impl, dtype_name
from menagerie.harness.results import MEASURED_STATUSES, SCHEMA_VERSION
from menagerie.harness.shards import Shard
from menagerie.harness.timing import Budget, TimerError, interleave, make_timer, relative_noise

GRAD_OUTPUT_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class RunConfig:
    size: str
    device: torch.device
    timer: str
    budget: Budget = field(default_factory=Budget)
    seeds: int = 3
    dtypes: tuple[torch.dtype, ...] = ()  # empty: each benchmark's default for the device
    modes: tuple[str, ...] = ()  # empty: every mode the benchmark declares
    cases: tuple[str, ...] = ()  # glob patterns on case names; empty: all
    impls: tuple[str, ...] = ()  # glob patterns on implementation names; empty: all
    shard: Shard | None = None  # this process's part of the rows (harness/shards.py); None: all of them

    def to_dict(self) -> dict:
        shard = {} if self.shard is None else {"shard": {"index": self.shard.index, "count": self.shard.count}}
        return {
            "size": self.size,
            "device": str(self.device),
            "timer": self.timer,
            "budget": asdict(self.budget),
            "seeds": self.seeds,
            "dtypes": [dtype_name(dtype) for dtype in self.dtypes],
            "modes": list(self.modes),
            "cases": list(self.cases),
            "impls": list(self.impls),
            **shard,
        }


@dataclass(frozen=True)
class Task:
    benchmark: Benchmark
    case: Case
    dtype: torch.dtype
    mode: str
    impls: tuple[Impl, ...]


def default_dtypes(benchmark: Benchmark, device: torch.device) -> tuple[torch.dtype, ...]:
    """bf16 on a GPU and fp32 on the CPU (the Triton interpreter has no bf16), when supported."""
    preferred = torch.bfloat16 if device.type == "cuda" else torch.float32
    return (preferred,) if preferred in benchmark.dtypes else benchmark.dtypes[:1]


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return not patterns or any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def plan(benchmarks: list[Benchmark], config: RunConfig) -> list[Task]:
    """The tasks of a run in order (benchmark, case, dtype, mode); with ``config.shard``, its share."""
    return _planned(benchmarks, config)[0]


def _planned(benchmarks: list[Benchmark], config: RunConfig) -> tuple[list[Task], list[list] | None]:
    """The tasks of ``plan`` and, for a shard, its groups (``shards.select``); the split is weighed once."""
    tasks = _every_task(benchmarks, config)
    return (tasks, None) if config.shard is None else shards.select(tasks, config.shard, config.budget)


def _every_task(benchmarks: list[Benchmark], config: RunConfig) -> list[Task]:
    tasks = []
    for bench in benchmarks:
        dtypes = (
            [d for d in config.dtypes if d in bench.dtypes] if config.dtypes else default_dtypes(bench, config.device)
        )
        modes = [m for m in config.modes if m in bench.modes] if config.modes else list(bench.modes)
        impls = tuple(impl for impl in bench.impls if _matches(impl.name, config.impls))
        for case in bench.cases.get(config.size, ()):
            if not _matches(case.name, config.cases):
                continue
            for dtype in dtypes:
                for mode in modes:
                    tasks.append(Task(bench, case, dtype, mode, impls))
    return tasks


def reference_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype in (torch.float32, torch.float64) else torch.float32


def _as_outputs(result) -> tuple[torch.Tensor, ...]:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def _named(outputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    return {"out": outputs[0]} if len(outputs) == 1 else {f"out{i}": out for i, out in enumerate(outputs)}


def _grad_outputs(outputs: tuple[torch.Tensor, ...], seed: int) -> list[torch.Tensor]:
    # Drawn on the CPU in float32 from the seed alone, so the upcast reference and
    # the implementation under test receive the same upstream gradient.
    generator = torch.Generator().manual_seed(seed + GRAD_OUTPUT_SEED_OFFSET)
    return [
        torch.randn(out.shape, generator=generator).to(out.device, out.dtype) for out in outputs if out.requires_grad
    ]


class Prepared:
    """One implementation bound to inputs for one mode: ``step()`` is what gets timed.

    In ``bwd`` mode the forward runs once here, outside what is timed, and each
    step re-runs the backward through the retained graph.
    """

    def __init__(self, bench: Benchmark, impl: Impl, inputs: dict, mode: str, seed: int):
        self.fn, self.mode, self.seed, self.accuracy_view = impl.fn, mode, seed, bench.accuracy_view
        self.leaves = (
            {}
            if mode == "fwd"
            else {name: inputs[name].detach().clone().requires_grad_(True) for name in bench.grad_inputs}
        )
        self.inputs = {**inputs, **self.leaves}
        self.outputs = self._forward() if mode == "bwd" else None
        self.grad_outputs = _grad_outputs(self.outputs, seed) if mode == "bwd" else None

    def _forward(self) -> tuple[torch.Tensor, ...]:
        return _as_outputs(self.fn(**self.inputs))

    def _backward(self, outputs, retain: bool) -> list[torch.Tensor]:
        if self.grad_outputs is None:
            self.grad_outputs = _grad_outputs(outputs, self.seed)
        differentiable = [out for out in outputs if out.requires_grad]
        grads = torch.autograd.grad(
            differentiable, list(self.leaves.values()), self.grad_outputs, retain_graph=retain, allow_unused=True
        )
        return [torch.zeros_like(leaf) if grad is None else grad for leaf, grad in zip(self.leaves.values(), grads)]

    def step(self):
        if self.mode == "fwd":
            with torch.no_grad():
                return self._forward()
        if self.mode == "bwd":
            return self._backward(self.outputs, retain=True)
        return self._backward(self._forward(), retain=False)

    def evaluate(self) -> dict[str, torch.Tensor]:
        """Named outputs to compare: forward outputs and/or input gradients, through the
        benchmark's accuracy view when it has one."""
        if self.mode == "fwd":
            with torch.no_grad():
                named = _named(self._forward())
        else:
            outputs = self.outputs if self.mode == "bwd" else self._forward()
            grads = self._backward(outputs, retain=self.mode == "bwd")
            named = {f"grad_{name}": grad for name, grad in zip(self.leaves, grads)}
            named = named if self.mode == "bwd" else {**_named(outputs), **named}
        if self.accuracy_view is None:
            return named
        with torch.no_grad():
            return self.accuracy_view(named, self.inputs)


def _upcast(inputs: dict, dtype: torch.dtype) -> dict:
    return {
        name: value.to(dtype) if isinstance(value, torch.Tensor) and value.is_floating_point() else value
        for name, value in inputs.items()
    }


def _empty_row(task: Task, impl: Impl, device_ceilings: dict) -> dict:
    cost = task.benchmark.cost(task.case, task.mode, task.dtype)
    floor = ceilings.roofline(cost.flops, cost.bytes, cost.exp, device_ceilings, cost.flop_ceiling)
    return {
        "benchmark": task.benchmark.name,
        "case": task.case.name,
        "params": dict(task.case.params),
        "impl": impl.name,
        "role": impl.role,
        "note": impl.note,
        "dtype": dtype_name(task.dtype),
        "mode": task.mode,
        "status": "ok",
        "reason": "",
        "samples_s": [],
        "replicate_medians_s": [],
        "replicate_sample_counts": [],
        "calls_per_sample": [],
        "autotune": [],
        "throttle": [],
        "stats": None,
        "accuracy": None,
        "cost": {
            "flops": float(cost.flops),
            "bytes": float(cost.bytes),
            "exp": float(cost.exp),
            "flop_ceiling": cost.flop_ceiling,
            "extra": {k: float(v) for k, v in cost.extra.items()},
        },
        "metrics": {
            "speedup_vs_reference": None,
            "tflops": None,
            "gbps": None,
            "gexp_per_s": None,
            "roofline_floor_s": floor,
            "roofline_pct": None,
            "peak_memory_bytes": None,
        },
    }


def _peak_memory(step: Callable, device: torch.device) -> int | None:
    if device.type != "cuda":
        return None  # the CPU allocator keeps no peak statistics
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    baseline = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - baseline)


def set_timing(row: dict, samples_by_replicate: list[list[float]]) -> None:
    """Samples, replicate medians, stats and the rates derived from the median."""
    row["samples_s"] = [sample for samples in samples_by_replicate for sample in samples]
    row["replicate_sample_counts"] = [len(samples) for samples in samples_by_replicate]
    row["stats"] = stats.summarize_replicates(samples_by_replicate)
    row["replicate_medians_s"] = [float(np.median(samples)) for samples in samples_by_replicate]
    median = row["stats"]["median_s"]
    cost, metrics = row["cost"], row["metrics"]
    metrics["tflops"] = cost["flops"] / median / 1e12 if cost["flops"] else None
    metrics["gbps"] = cost["bytes"] / median / 1e9 if cost["bytes"] else None
    metrics["gexp_per_s"] = cost["exp"] / median / 1e9 if cost["exp"] else None
    floor = metrics["roofline_floor_s"]
    metrics["roofline_pct"] = 100.0 * floor / median if floor else None


def set_speedups(rows: list[dict]) -> None:
    """Each timed row's speedup over the timed reference row of its (benchmark, case, dtype, mode)."""
    references = {
        (row["benchmark"], row["case"], row["dtype"], row["mode"]): row["stats"]["median_s"]
        for row in rows
        if row["role"] == "reference" and row["stats"]
    }
    for row in rows:
        reference = references.get((row["benchmark"], row["case"], row["dtype"], row["mode"]))
        if row["stats"] and reference:
            row["metrics"]["speedup_vs_reference"] = reference / row["stats"]["median_s"]


def inputs_for_seeds(task: Task, device: torch.device, seeds: int) -> dict[int, dict]:
    return {seed: task.benchmark.make_inputs(task.case, task.dtype, device, seed) for seed in range(seeds)}


def expected_outputs(task: Task, inputs_by_seed: dict[int, dict]) -> dict[int, dict[str, torch.Tensor]]:
    """The reference implementation's outputs on upcast inputs, per seed."""
    bench = task.benchmark
    return {
        seed: Prepared(bench, bench.reference, _upcast(inputs, reference_dtype(task.dtype)), task.mode, seed).evaluate()
        for seed, inputs in inputs_by_seed.items()
    }


def check_accuracy(
    task: Task, impl: Impl, inputs_by_seed: dict[int, dict], expected: dict[int, dict[str, torch.Tensor]]
) -> accuracy.AccuracyRecord:
    """Runs ``impl`` on every seed with poisoned allocations and compares with ``expected``."""
    tolerance = task.benchmark.tolerances[task.dtype]
    records = []
    for seed, inputs in inputs_by_seed.items():
        with accuracy.poisoned_allocations() if impl.poison else contextlib.nullcontext():
            outputs = Prepared(task.benchmark, impl, recheck.cloned(inputs), task.mode, seed).evaluate()
        record = accuracy.check_outputs(outputs, expected[seed], tolerance, [seed])
        record.poisoned = impl.poison
        records.append(record)
    return accuracy.merge_records(records)


def check_after_timing(
    task: Task, impl: Impl, prepared: Prepared, pristine: dict, fresh: dict, expected_fresh: dict[str, torch.Tensor]
) -> tuple[str, str] | None:
    """``(status, reason)`` when the timed implementation changed its inputs or is wrong on new values in its
    timed tensors (``menagerie.harness.recheck``); None when it passes."""
    changed = recheck.mutated_inputs(prepared.inputs, pristine)
    if changed:
        return recheck.MUTATES_INPUTS, f"it changed its input(s) {', '.join(changed)} while timed"
    if recheck.refill(prepared.inputs, fresh):
        if task.mode == "bwd":  # the backward of the new values' forward
            prepared.outputs = prepared._forward()
        outputs, where = prepared.evaluate(), "new values in the tensors it was timed on"
    else:
        outputs = Prepared(task.benchmark, impl, recheck.cloned(fresh), task.mode, 0).evaluate()
        where = "new inputs"
    record = accuracy.check_outputs(outputs, expected_fresh, task.benchmark.tolerances[task.dtype], [0])
    if not record.passed:
        return recheck.WRONG_AFTER_TIMING, f"after timing, on {where}: {record.message}"
    return None


def skip_reason(impl: Impl, task: Task, device: torch.device) -> str | None:
    return impl.skip_reason(task.case, device, task.dtype, task.mode) if impl.skip_reason else None


def run_task(
    task: Task, config: RunConfig, device_ceilings: dict, on_row: Callable[[dict], None] | None = None
) -> list[dict]:
    inputs_by_seed = inputs_for_seeds(task, config.device, config.seeds)
    expected = expected_outputs(task, inputs_by_seed)
    rows, timed = [], []  # timed: (row, implementation, prepared, timer, seconds per sample)
    reader = throttle.nvml_reader(config.device)
    watch = throttle.BlockWatch(reader, config.budget.min_clock) if reader else None
    for impl in task.impls:
        row = _empty_row(task, impl, device_ceilings)
        rows.append(row)
        reason = skip_reason(impl, task, config.device)
        if reason:
            row.update(status="skipped", reason=reason)
            continue
        try:
            record = check_accuracy(task, impl, inputs_by_seed, expected)
            row["accuracy"] = record.to_dict()
            if not record.passed:
                row.update(status="accuracy_failed", reason=record.message)
            prepared = Prepared(task.benchmark, impl, recheck.cloned(inputs_by_seed[0]), task.mode, 0)
            timer = make_timer(prepared.step, config.budget, config.device, config.timer)
            with chosen_configs() as chosen:
                seconds_per_sample = timer.warm_up()
            if watch:
                watch.calibrate()
            row["autotune"] = [chosen]
            timed.append((row, impl, prepared, timer, seconds_per_sample))
        except TimerError as error:
            row.update(status="skipped", reason=str(error))
        except Exception as error:  # an implementation that crashes is a finding, not a harness crash
            row.update(status="error", reason=f"{type(error).__name__}: {error}")

    def crashed(index: int, error: Exception) -> None:
        timed[index][0].update(status="error", reason=f"{type(error).__name__}: {error}")

    samples = interleave(
        [timer for *_, timer, _ in timed],
        [seconds for *_, seconds in timed],
        config.budget,
        on_error=crashed,
        watch=watch,
    )
    fresh = expected_fresh = None  # another seed's inputs and the reference's outputs on them, for the recheck
    for index, ((row, impl, prepared, timer, _), taken) in enumerate(zip(timed, samples)):
        if not taken:
            continue
        set_timing(row, [taken])
        row["calls_per_sample"] = [timer.calls_per_sample]
        row["throttle"] = [watch.summary(index)] if watch else []
        noise = relative_noise(taken)
        if config.budget.max_noise and noise > config.budget.max_noise and row["status"] == "ok":
            row.update(
                status="noisy",
                reason=f"noise {noise:.2%} is above --max-noise {config.budget.max_noise:.2%} "
                f"after {len(taken)} samples, when its --max-time or --max-reps ran out",
            )
        try:
            row["metrics"]["peak_memory_bytes"] = _peak_memory(prepared.step, config.device)
            if row["status"] not in MEASURED_STATUSES:
                continue
            if fresh is None:
                fresh = task.benchmark.make_inputs(task.case, task.dtype, config.device, config.seeds)
                expected_fresh = expected_outputs(task, {0: fresh})[0]
            found = check_after_timing(task, impl, prepared, inputs_by_seed[0], fresh, expected_fresh)
            if found:
                row.update(status=found[0], reason=found[1])
            elif watch and watch.kept_throttled.get(index):
                row.update(
                    status="throttled",
                    reason=f"{watch.kept_throttled[index]} block(s) still throttled after "
                    f"{watch.retaken.get(index, 0)} retakes: "
                    f"{', '.join(sorted(watch.reasons_seen[index]))}",
                )
        except Exception as error:
            row.update(status="error", reason=f"{type(error).__name__}: {error}")
    set_speedups(rows)
    if on_row:
        for row in rows:
            on_row(row)
    return rows


def run(
    benchmarks: list[Benchmark],
    config: RunConfig,
    command: list[str] | None = None,
    on_row: Callable[[dict], None] | None = None,
    on_task: Callable[[Task], None] | None = None,
) -> dict:
    """Runs every planned task and returns the run record (not yet written)."""
    tasks, shard_groups = _planned(benchmarks, config)
    ceilings_by_dtype = {}
    for dtype in sorted({task.dtype for task in tasks}, key=str):
        ceilings_by_dtype[dtype_name(dtype)] = ceilings.get_ceilings(config.device, dtype)
    started = provenance.collect(config.device, command)
    rows, gpu_states = [], []
    for task in tasks:
        if on_task:
            on_task(task)
        rows.extend(run_task(task, config, ceilings_by_dtype[dtype_name(task.dtype)], on_row))
        state = provenance.gpu_state(config.device)
        if state:
            gpu_states.append(state)
    run_config = {**config.to_dict(), "repeat": 1}
    if config.shard is not None:
        run_config["shard"]["groups"] = shard_groups
    return {
        "schema_version": SCHEMA_VERSION,
        "provenance": started,
        "config": run_config,
        "ceilings": {name: {key: c.to_dict() for key, c in found.items()} for name, found in ceilings_by_dtype.items()},
        "replicates": [
            {
                "timestamp": started["timestamp"],
                "gpu_under_load": provenance.load_summary(gpu_states),
                "warnings": provenance.clock_warnings(gpu_states),
            }
        ],
        "rows": rows,
    }
