"""``ssm.linear_scan``: the first-order linear recurrence ``x_t = a_t x_{t-1} + b_t``.

Triton and hand-written CUDA C (through CuPy) against the doubling-scan PyTorch
reference, and accelerated-scan's Triton kernel as a peer when installed. The scan
is memory-bound: the floor is the minimal bytes (read a and b, write x forward;
read a, x and dL/dx, write both gradients backward) over the copy bandwidth.
"""

import importlib.util

import torch

from harness.registry import Benchmark, Case, Cost, Impl, Tolerance, register
from kernels.ssm import linear_scan, linear_scan_reference
from kernels.ssm.linear_scan_cuda import linear_scan_cuda, unavailable_reason

# The state is float32 everywhere; low-precision outputs carry a few roundings of the dtype.
TOLERANCES = {
    torch.float32: Tolerance(atol=1e-5, rtol=1e-5),
    torch.float16: Tolerance(atol=4e-3, rtol=4e-3),
    torch.bfloat16: Tolerance(atol=3e-2, rtol=3e-2),
}


def scan_case(batch, channels, length):
    return Case(f"b{batch}c{channels}t{length}", {"batch": batch, "channels": channels, "length": length})


def make_inputs(case: Case, dtype: torch.dtype, device: torch.device, seed: int) -> dict:
    p = case.params
    generator = torch.Generator().manual_seed(seed)
    shape = (p["batch"], p["channels"], p["length"])
    gates = torch.sigmoid(torch.randn(shape, generator=generator) + 1.0)  # decays in (0, 1), as in SSMs
    return {"gates": gates.to(device, dtype), "tokens": torch.randn(shape, generator=generator).to(device, dtype)}


def cost(case: Case, mode: str, dtype: torch.dtype) -> Cost:
    p = case.params
    elements = p["batch"] * p["channels"] * p["length"]
    fwd = Cost(flops=2 * elements, bytes=3 * elements * dtype.itemsize, flop_ceiling="fp32")
    bwd = Cost(flops=3 * elements, bytes=5 * elements * dtype.itemsize, flop_ceiling="fp32")
    return {"fwd": fwd, "bwd": bwd, "fwd_bwd": fwd + bwd}[mode]


def _cuda_skip(case, device, dtype, mode):
    return unavailable_reason(device)


def accelerated_scan_triton(gates, tokens):
    from accelerated_scan.scalar import scan

    return scan(gates.contiguous(), tokens.contiguous())


def _accelerated_scan_skip(case, device, dtype, mode):
    return None if importlib.util.find_spec("accelerated_scan") else "accelerated-scan is not installed"


register(Benchmark(
    name="ssm.linear_scan",
    description="x_t = a_t * x_{t-1} + b_t over (B, C, T)",
    cases={
        "tiny": [scan_case(2, 3, 129), scan_case(1, 5, 300)],
        "small": [scan_case(8, 1536, 2048), scan_case(8, 1536, 8192)],
        "full": [scan_case(8, 1536, length) for length in (2048, 8192, 32768, 65536)],
    },
    make_inputs=make_inputs,
    reference=Impl("torch_doubling", linear_scan_reference, role="reference",
                   note="Hillis-Steele doubling scan, float32"),
    variants=[Impl("triton", linear_scan), Impl("cuda_c", linear_scan_cuda, skip_reason=_cuda_skip,
                                                   note="CUDA C through CuPy")],
    peers=[Impl("accelerated_scan", accelerated_scan_triton, role="peer", skip_reason=_accelerated_scan_skip,
                note="accelerated_scan.scalar (Triton)")],
    cost=cost,
    tolerances=TOLERANCES,
    modes=("fwd", "bwd", "fwd_bwd"),
    grad_inputs=("gates", "tokens"),
))
