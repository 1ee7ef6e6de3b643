"""pytest-benchmark integration: ``pytest benchmarks/ --benchmark-only``.

Every registered (benchmark, case, dtype, mode, implementation) becomes one
pytest-benchmark test, so its storage, ``--benchmark-compare`` and
``--benchmark-compare-fail`` work on the suite's kernels. Each test checks
accuracy first (it fails on a wrong kernel), then times with a GPU-synchronized
call and, on a GPU, an untimed L2 flush before every round.
"""

import pytest
import torch

import menagerie.kernels  # noqa: F401  (switches Triton to its interpreter when there is no GPU)
from menagerie.harness import registry, runner
from menagerie.harness.device import default_device, parse_device
from menagerie.harness.timing import Budget


def pytest_addoption(parser):
    group = parser.getgroup("menagerie")
    group.addoption(
        "--menagerie-size",
        choices=registry.SIZES,
        default=None,
        help="size preset (default: small on a GPU, tiny on the CPU)",
    )
    group.addoption("--menagerie-device", default=None, help="cpu or cuda (default: cuda when available)")
    group.addoption(
        "--menagerie-dtype",
        action="append",
        default=[],
        choices=sorted(registry.DTYPES),
        help="dtype (repeatable; default: bf16 on a GPU, fp32 on the CPU)",
    )
    group.addoption(
        "--menagerie-rounds", type=int, default=None, help="timed rounds per test (default: 20 on a GPU, 5 on the CPU)"
    )


def _config(config) -> runner.RunConfig:
    device = (
        parse_device(config.getoption("--menagerie-device"))
        if config.getoption("--menagerie-device")
        else default_device()
    )
    return runner.RunConfig(
        size=config.getoption("--menagerie-size") or registry.default_size(device),
        device=device,
        timer="events" if device.type == "cuda" else "cpu",
        budget=Budget(),
        seeds=1,
        dtypes=tuple(registry.torch_dtype(name) for name in config.getoption("--menagerie-dtype")),
    )


def pytest_generate_tests(metafunc):
    if "menagerie_case" not in metafunc.fixturenames:
        return
    config = _config(metafunc.config)
    params, ids = [], []
    for task in runner.plan(registry.select(), config):
        for impl in task.impls:
            params.append((task, impl, config))
            ids.append(
                f"{task.benchmark.name}-{task.case.name}-{runner.dtype_name(task.dtype)}-{task.mode}-{impl.name}"
            )
    metafunc.parametrize("menagerie_case", params, ids=ids)


@pytest.fixture
def rounds(request):
    chosen = request.config.getoption("--menagerie-rounds")
    return chosen or (20 if torch.cuda.is_available() else 5)
