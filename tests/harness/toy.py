"""A toy benchmark for harness tests: y = 2x + b, with correct and broken variants."""

import torch

from menagerie.harness.registry import Benchmark, Case, Cost, Impl, Tolerance
from menagerie.harness.runner import RunConfig
from menagerie.harness.timing import Budget


def make_inputs(case, dtype, device, seed):
    generator = torch.Generator().manual_seed(seed)
    n = case.params["n"]
    return {
        "x": torch.randn(n, generator=generator).to(device, dtype),
        "b": torch.randn(n, generator=generator).to(device, dtype),
    }


def reference(x, b):
    return 2 * x + b


def correct(x, b):
    """Writes every element of a fresh allocation (which the harness poisons)."""
    out = torch.empty_like(x)
    return out.copy_(2 * x + b)


def slightly_wrong(x, b):
    return 2 * x + b + 1e-3


def unwritten_tail(x, b):
    """Computes every element but the last, which stays as the allocator left it."""
    out = torch.empty_like(x)
    out[:-1] = 2 * x[:-1] + b[:-1]
    return out


def produces_nan(x, b):
    out = 2 * x + b
    out[0] = float("nan")
    return out


def crashes(x, b):
    raise RuntimeError("kernel launch failed")


def never_here(case, device, dtype, mode):
    return "needs hardware this machine lacks"


def toy_benchmark(variants, modes=("fwd",)):
    return Benchmark(
        name="toy.axpb",
        description="y = 2x + b",
        cases={"tiny": [Case("n33", {"n": 33})]},
        make_inputs=make_inputs,
        reference=Impl("reference", reference, role="reference"),
        variants=variants,
        cost=lambda case, mode, dtype: Cost(flops=2 * case.params["n"], bytes=3 * case.params["n"] * dtype.itemsize),
        tolerances={torch.float32: Tolerance(atol=1e-6, rtol=1e-6), torch.float16: Tolerance(atol=1e-3, rtol=2e-3)},
        modes=modes,
        grad_inputs=("x", "b") if modes != ("fwd",) else (),
    )


def quick_config(**overrides):
    settings = dict(
        size="tiny",
        device=torch.device("cpu"),
        timer="cpu",
        budget=Budget(warmup_s=0.0, measure_s=0.01, min_reps=5, max_reps=20),
        seeds=2,
    )
    settings.update(overrides)
    return RunConfig(**settings)
