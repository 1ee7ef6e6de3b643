"""The SSM family: ``ssm.linear_scan``, ``ssm.selective_scan`` and ``ssm.mamba_block``.

- ``ssm.linear_scan``, ``x_t = a_t x_{t-1} + b_t``: Triton and hand-written CUDA C
  (through CuPy) against the doubling-scan PyTorch reference, with accelerated-scan's
  Triton kernel as a peer when installed. Memory-bound: the floor is the minimal
  bytes (read a and b, write x forward; read a, x and dL/dx, write both gradients
  backward) over the copy bandwidth.
- ``ssm.selective_scan``: Mamba's scan, Triton against the chunked PyTorch reference
  and mamba-ssm's CUDA kernel when installed. Its floor is the largest of minimal
  bytes over bandwidth, exponentials over the special-function rate and FP32 FLOPs
  over the FP32 rate (it cannot use tensor cores).
- ``ssm.mamba_block``: a whole Mamba block with the Triton scan against the same block
  with the PyTorch scan, forward and backward.
"""

import importlib.util

import torch

from benchmarks import interpreted_bf16
from harness.registry import Benchmark, Case, Cost, Impl, Tolerance, register
from kernels.ssm import linear_scan, linear_scan_reference, selective_scan, selective_scan_reference
from kernels.ssm.linear_scan_cuda import linear_scan_cuda, unavailable_reason
from kernels.ssm.linear_scan_cuda import program as cuda_c_program
from models.mamba import MambaBlock

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
    if importlib.util.find_spec("accelerated_scan") is None:
        return "accelerated-scan is not installed"
    return interpreted_bf16(case, device, dtype, mode)


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
    variants=[Impl("triton", linear_scan, skip_reason=interpreted_bf16, triton=True), Impl("cuda_c", linear_scan_cuda, skip_reason=_cuda_skip,
                                                   note="CUDA C through CuPy", cuda_c=cuda_c_program)],
    peers=[Impl("accelerated_scan", accelerated_scan_triton, role="peer", skip_reason=_accelerated_scan_skip,
                note="accelerated_scan.scalar (Triton)")],
    cost=cost,
    tolerances=TOLERANCES,
    modes=("fwd", "bwd", "fwd_bwd"),
    grad_inputs=("gates", "tokens"),
))


# --- ssm.selective_scan -------------------------------------------------------------

# Per (batch, channel, step, state): exp(delta*A) and its product (2), delta*B*u (2), the
# state update (2) and C*x into y (2). Backward recomputes the forward and runs the adjoint
# recurrence with its five gradient contributions: about twice the forward's arithmetic.
SCAN_FWD_FLOPS = 8
SCAN_BWD_FLOPS = 16


def selective_case(batch, dim, length, state, layout="batch", groups=1):
    suffix = {"batch": "", "shared": "-shared", "group": f"-group{groups}"}[layout]
    name = f"b{batch}d{dim}l{length}n{state}{suffix}"
    return Case(name, dict(batch=batch, dim=dim, length=length, state=state, layout=layout, groups=groups))


def _bc(layout, batch, dim, state, length, groups, generator):
    shape = {"shared": (dim, state), "batch": (batch, state, length), "group": (batch, groups, state, length)}[layout]
    return torch.randn(shape, generator=generator)


def make_selective_inputs(case: Case, dtype: torch.dtype, device: torch.device, seed: int) -> dict:
    # The distributions of mamba-ssm's own tests: small positive steps, slow decays.
    p = case.params
    generator = torch.Generator().manual_seed(seed)
    batch, dim, length, state = p["batch"], p["dim"], p["length"], p["state"]
    activations = dict(
        u=torch.randn(batch, dim, length, generator=generator),
        delta=0.5 * torch.rand(batch, dim, length, generator=generator),
        B=_bc(p["layout"], batch, dim, state, length, p["groups"], generator),
        C=_bc(p["layout"], batch, dim, state, length, p["groups"], generator),
        z=torch.randn(batch, dim, length, generator=generator),
    )
    weights = dict(A=-0.5 * torch.rand(dim, state, generator=generator), D=torch.randn(dim, generator=generator),
                   delta_bias=0.5 * torch.rand(dim, generator=generator))
    return {**{name: value.to(device, dtype) for name, value in activations.items()},
            **{name: value.to(device) for name, value in weights.items()}, "delta_softplus": True}


def selective_cost(case: Case, mode: str, dtype: torch.dtype) -> Cost:
    p = case.params
    per_channel = p["batch"] * p["dim"] * p["length"]
    per_state = per_channel * p["state"]
    bc = {"shared": p["dim"] * p["state"], "batch": p["batch"] * p["state"] * p["length"],
          "group": p["batch"] * p["groups"] * p["state"] * p["length"]}[p["layout"]]
    item = dtype.itemsize
    # exps: the decay per state, softplus and silu per channel.
    fwd = Cost(flops=SCAN_FWD_FLOPS * per_state, bytes=(4 * per_channel + 2 * bc) * item,
               exp=per_state + 2 * per_channel, flop_ceiling="fp32")
    bwd = Cost(flops=SCAN_BWD_FLOPS * per_state, bytes=(8 * per_channel + 4 * bc) * item,
               exp=per_state + 2 * per_channel, flop_ceiling="fp32")
    return {"fwd": fwd, "bwd": bwd, "fwd_bwd": fwd + bwd}[mode]


def mamba_ssm_selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    return selective_scan_fn(u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)


def _mamba_ssm_skip(case, device, dtype, mode):
    if importlib.util.find_spec("mamba_ssm") is None:
        return "mamba-ssm is not installed"
    return None if device.type == "cuda" else "mamba-ssm runs on CUDA only"


register(Benchmark(
    name="ssm.selective_scan",
    description="Mamba's selective scan, out = (scan(u, delta, A, B, C) + D*u) * silu(z); u (B, D, L), N states",
    cases={
        "tiny": [selective_case(1, 4, 37, 4), selective_case(2, 4, 19, 8, layout="group", groups=2),
                 selective_case(1, 4, 21, 4, layout="shared")],
        "small": [selective_case(4, 1536, 2048, 16), selective_case(8, 2048, 2048, 16)],
        "full": [selective_case(8, dim, length, 16) for dim in (2048, 5120) for length in (2048, 8192)],
    },
    make_inputs=make_selective_inputs,
    reference=Impl("torch_chunked", selective_scan_reference, role="reference", note="vectorized, float32"),
    variants=[Impl("triton", selective_scan, skip_reason=interpreted_bf16, triton=True)],
    peers=[Impl("mamba_ssm", mamba_ssm_selective_scan, role="peer", skip_reason=_mamba_ssm_skip,
                note="selective_scan_fn (CUDA)")],
    cost=selective_cost,
    # As the kernel's tests: 1e-4 of each result's largest magnitude for the float32 state's
    # long sums, plus one ulp of the output dtype, which half-precision results are rounded to.
    tolerances={torch.float32: Tolerance(atol=0.0, atol_of_max=1e-4, rtol=0.0),
                torch.float16: Tolerance(atol=0.0, atol_of_max=1e-4, rtol=2.0 ** -10),
                torch.bfloat16: Tolerance(atol=0.0, atol_of_max=1e-4, rtol=2.0 ** -7)},
    modes=("fwd", "bwd", "fwd_bwd"),
    grad_inputs=("u", "delta", "A", "B", "C", "D", "z", "delta_bias"),
))


# --- ssm.mamba_block ----------------------------------------------------------------

_SKELETONS = {}


def _skeleton(d_model: int, d_state: int, scan) -> MambaBlock:
    """A block whose parameters are swapped for the inputs' by functional_call."""
    key = (d_model, d_state, scan)
    if key not in _SKELETONS:
        _SKELETONS[key] = MambaBlock(d_model, d_state=d_state, scan=scan)
    return _SKELETONS[key]


def block_case(batch, length, d_model, state):
    return Case(f"b{batch}l{length}m{d_model}n{state}", dict(batch=batch, length=length, d_model=d_model, state=state))


def make_block_inputs(case: Case, dtype: torch.dtype, device: torch.device, seed: int) -> dict:
    p = case.params
    torch.manual_seed(seed)  # the block's own initialisation, reproducible per seed
    block = MambaBlock(p["d_model"], d_state=p["state"])
    hidden = torch.randn(p["batch"], p["length"], p["d_model"], generator=torch.Generator().manual_seed(seed))
    return {"hidden": hidden.to(device, dtype),
            **{name: value.detach().to(device, dtype) for name, value in block.named_parameters()}}


def _block_forward(scan):
    def forward(hidden, **parameters):
        block = _skeleton(hidden.shape[-1], parameters["A_log"].shape[1], scan)
        return torch.func.functional_call(block, parameters, (hidden,))
    return forward


BLOCK_PARAMETERS = tuple(name for name, _ in MambaBlock(16, d_state=4).named_parameters())


def block_cost(case: Case, mode: str, dtype: torch.dtype) -> Cost:
    p = case.params
    tokens, d_model, state = p["batch"] * p["length"], p["d_model"], p["state"]
    inner, rank = 2 * d_model, -(-d_model // 16)
    gemm = 2 * tokens * (d_model * 2 * inner + inner * (rank + 2 * state) + rank * inner + inner * d_model)
    weights = d_model * 2 * inner + inner * (rank + 2 * state) + rank * inner + inner * d_model
    activations = tokens * (2 * d_model + 6 * inner + 2 * state)  # read and write each intermediate once
    fwd = Cost(flops=gemm, bytes=(weights + activations) * dtype.itemsize, exp=tokens * inner * (state + 3))
    bwd = Cost(flops=2 * gemm, bytes=2 * (weights + activations) * dtype.itemsize, exp=tokens * inner * (state + 3))
    return {"fwd": fwd, "bwd": bwd, "fwd_bwd": fwd + bwd}[mode]


register(Benchmark(
    name="ssm.mamba_block",
    description="a Mamba block (in-projection, causal conv, selective scan, gated out-projection), (B, L, d_model)",
    cases={
        "tiny": [block_case(1, 17, 8, 4)],
        "small": [block_case(8, 2048, 768, 16)],
        "full": [block_case(8, 4096, 2560, 16)],
    },
    make_inputs=make_block_inputs,
    reference=Impl("torch_reference_scan", _block_forward(selective_scan_reference), role="reference",
                   note="the block with the vectorized PyTorch scan"),
    variants=[Impl("triton_scan", _block_forward(selective_scan), skip_reason=interpreted_bf16, triton=True)],
    cost=block_cost,
    # Projections around the scan add matmul rounding: a little looser than the scan alone.
    tolerances={torch.float32: Tolerance(atol=1e-4, rtol=1e-3), torch.float16: Tolerance(atol=1e-2, rtol=1e-2),
                torch.bfloat16: Tolerance(atol=5e-2, rtol=5e-2)},
    modes=("fwd", "bwd", "fwd_bwd"),
    grad_inputs=("hidden", *BLOCK_PARAMETERS),
))
