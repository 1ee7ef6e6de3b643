"""Every registered benchmark row as a pytest-benchmark test (see conftest.py)."""

import pytest

from menagerie.harness import runner
from menagerie.harness.device import synchronize
from menagerie.harness.timing import L2Flush


def test_registered(benchmark, menagerie_case, rounds):
    task, impl, config = menagerie_case
    reason = runner.skip_reason(impl, task, config.device)
    if reason:
        pytest.skip(reason)
    inputs_by_seed = runner.inputs_for_seeds(task, config.device, config.seeds)
    record = runner.check_accuracy(task, impl, inputs_by_seed, runner.expected_outputs(task, inputs_by_seed))
    assert record.passed, record.message

    cost = task.benchmark.cost(task.case, task.mode, task.dtype)
    benchmark.group = f"{task.benchmark.name} {task.case.name} {runner.dtype_name(task.dtype)} {task.mode}"
    benchmark.extra_info.update(
        benchmark=task.benchmark.name,
        case=task.case.name,
        params=dict(task.case.params),
        impl=impl.name,
        role=impl.role,
        dtype=runner.dtype_name(task.dtype),
        mode=task.mode,
        device=str(config.device),
        flops=cost.flops,
        bytes=cost.bytes,
        exp=cost.exp,
        max_abs_err=record.max_abs_err,
    )
    prepared = runner.Prepared(task.benchmark, impl, inputs_by_seed[0], task.mode, 0)
    flush = L2Flush(config.device) if config.device.type == "cuda" else None

    def flushed():
        # The flush is asynchronous: unless it has finished when the timer starts, its GPU time
        # lands inside every timed round.
        flush()
        synchronize(config.device)

    def synchronized_step():
        prepared.step()
        synchronize(config.device)

    benchmark.pedantic(
        synchronized_step, setup=flushed if flush else None, rounds=rounds, warmup_rounds=1, iterations=1
    )
