"""``ssm.linear_scan`` and ``ssm.selective_scan``.

- ``ssm.linear_scan``, ``x_t = a_t x_{t-1} + b_t``: Triton and hand-written CUDA C
  (through CuPy) against the doubling-scan PyTorch reference, with accelerated-scan's
  Triton kernel and fla's HGRN kernels (``h_t = exp(g_t) h_{t-1} + x_t`` on ``(B, T, D)``,
  fed ``g = log a`` and transposed copies, which their rows time too) as peers when
  installed. Memory-bound: the floor is the minimal bytes (read a and b, write x forward;
  read a, x and dL/dx, write both gradients backward) over the copy bandwidth.
- ``ssm.selective_scan``: Mamba's scan, Triton against the chunked PyTorch reference
  and mamba-ssm's CUDA kernel when installed. Its floor is the largest of minimal
  bytes over bandwidth, exponentials over the special-function rate and FP32 FLOPs
  over the FP32 rate (it cannot use tensor cores).
"""

import importlib

import torch

from menagerie.benchmarks import interpreted_bf16
from menagerie.harness.registry import (
    Benchmark,
    Case,
    Cost,
    Impl,
    Tolerance,
    cost_of_mode,
    first_reason,
    needs,
    register,
)
from menagerie.kernels.ssm import linear_scan, linear_scan_reference, selective_scan, selective_scan_reference
from menagerie.kernels.ssm.linear_scan_cuda import linear_scan_cuda, unavailable_reason
from menagerie.kernels.ssm.linear_scan_cuda import program as cuda_c_program

# What the family's peers need (ssd.py's too).
NEEDS_FLA = needs("fla-core", module="fla", cuda=True, why="its kernels autotune, which Triton's interpreter cannot")
NEEDS_MAMBA_SSM = needs("mamba-ssm", module="mamba_ssm", cuda=True)


# --- ssm.linear_scan ----------------------------------------------------------------

# The state is float32 everywhere; low-precision outputs carry a few roundings of the dtype.
LINEAR_SCAN_TOLERANCES = {
    torch.float32: Tolerance(atol=1e-5, rtol=1e-5),
    torch.float16: Tolerance(atol=4e-3, rtol=4e-3),
    torch.bfloat16: Tolerance(atol=3e-2, rtol=3e-2),
}


def linear_scan_case(*, batch, channels, length):
    return Case(f"b{batch}c{channels}t{length}", {"batch": batch, "channels": channels, "length": length})


def make_linear_scan_inputs(case: Case, dtype: torch.dtype, device: torch.device, seed: int) -> dict:
    p = case.params
    generator = torch.Generator().manual_seed(seed)
    shape = (p["batch"], p["channels"], p["length"])
    gates = torch.sigmoid(torch.randn(shape, generator=generator) + 1.0)  # decays in (0, 1), as in SSMs
    return {"gates": gates.to(device, dtype), "tokens": torch.randn(shape, generator=generator).to(device, dtype)}


def linear_scan_cost(case: Case, mode: str, dtype: torch.dtype) -> Cost:
    p = case.params
    elements = p["batch"] * p["channels"] * p["length"]
    fwd = Cost(flops=2 * elements, bytes=3 * elements * dtype.itemsize, flop_ceiling="fp32")
    bwd = Cost(flops=3 * elements, bytes=5 * elements * dtype.itemsize, flop_ceiling="fp32")
    return cost_of_mode(mode, fwd, bwd)


def _cuda_c_skip(case, device, dtype, mode):
    return unavailable_reason(device)


def accelerated_scan_triton(gates, tokens):
    from accelerated_scan.scalar import scan

    return scan(gates.contiguous(), tokens.contiguous())


def hgrn_as_linear_scan(hgrn, gates, tokens):
    """``linear_scan`` through an HGRN recurrence ``hgrn(x, g) -> (h, final)``, ``h_t = exp(g_t) h_{t-1} + x_t``
    over ``(B, T, D)``: log gates and transposed copies."""
    # The log in float32: a half-precision log would perturb every decay by a rounding.
    log_gates = torch.log(gates.float()).transpose(1, 2).contiguous()
    out, _ = hgrn(tokens.transpose(1, 2).contiguous(), log_gates)
    return out.transpose(1, 2)


def fla_hgrn(kernel_name):
    def run(gates, tokens):
        return hgrn_as_linear_scan(getattr(importlib.import_module("fla.ops.hgrn"), kernel_name), gates, tokens)

    return run


register(
    Benchmark(
        name="ssm.linear_scan",
        description="x_t = a_t * x_{t-1} + b_t over (B, C, T)",
        cases={
            "tiny": [
                linear_scan_case(batch=2, channels=3, length=129),
                linear_scan_case(batch=1, channels=5, length=300),
            ],
            "small": [linear_scan_case(batch=8, channels=1536, length=length) for length in (2048, 8192)],
            "full": [linear_scan_case(batch=8, channels=1536, length=length) for length in (2048, 8192, 32768, 65536)],
        },
        make_inputs=make_linear_scan_inputs,
        reference=Impl(
            "torch_doubling", linear_scan_reference, role="reference", note="Hillis-Steele doubling scan, float32"
        ),
        variants=[
            Impl("triton", linear_scan, skip_reason=interpreted_bf16, triton=True),
            Impl(
                "cuda_c", linear_scan_cuda, skip_reason=_cuda_c_skip, note="CUDA C through CuPy", cuda_c=cuda_c_program
            ),
        ],
        peers=[
            Impl(
                "accelerated_scan",
                accelerated_scan_triton,
                role="peer",
                skip_reason=first_reason(needs("accelerated-scan", module="accelerated_scan"), interpreted_bf16),
                note="accelerated_scan.scalar (Triton)",
            ),
            Impl(
                "fla_hgrn_chunk",
                fla_hgrn("chunk_hgrn"),
                role="peer",
                skip_reason=NEEDS_FLA,
                note="fla.ops.hgrn.chunk_hgrn (Triton) on log gates, (B, T, C) copies",
            ),
            Impl(
                "fla_hgrn_recurrent",
                fla_hgrn("fused_recurrent_hgrn"),
                role="peer",
                skip_reason=NEEDS_FLA,
                note="fla.ops.hgrn.fused_recurrent_hgrn (Triton) on log gates, (B, T, C) copies",
            ),
        ],
        cost=linear_scan_cost,
        tolerances=LINEAR_SCAN_TOLERANCES,
        modes=("fwd", "bwd", "fwd_bwd"),
        grad_inputs=("gates", "tokens"),
    )
)


# --- ssm.selective_scan -------------------------------------------------------------

# Per (batch, channel, step, state): exp(delta*A) and its product (2), delta*B*u (2), the
# state update (2) and C*x into y (2). Backward recomputes the forward and runs the adjoint
# recurrence with its five gradient contributions: about twice the forward's arithmetic.
SCAN_FWD_FLOPS = 8
SCAN_BWD_FLOPS = 16


def selective_case(*, batch, dim, length, state, layout="batch", groups=1):
    """``layout``: B and C of shape ``(B, N, L)`` (``batch``), ``(B, G, N, L)`` (``group``: ``groups`` groups of
    channels) or ``(D, N)`` (``shared``: the same at every step)."""
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
    weights = dict(
        A=-0.5 * torch.rand(dim, state, generator=generator),
        D=torch.randn(dim, generator=generator),
        delta_bias=0.5 * torch.rand(dim, generator=generator),
    )
    return {
        **{name: value.to(device, dtype) for name, value in activations.items()},
        **{name: value.to(device) for name, value in weights.items()},
        "delta_softplus": True,
    }


def selective_cost(case: Case, mode: str, dtype: torch.dtype) -> Cost:
    p = case.params
    per_channel = p["batch"] * p["dim"] * p["length"]
    per_state = per_channel * p["state"]
    bc = {
        "shared": p["dim"] * p["state"],
        "batch": p["batch"] * p["state"] * p["length"],
        "group": p["batch"] * p["groups"] * p["state"] * p["length"],
    }[p["layout"]]
    item = dtype.itemsize
    # exps: the decay per state, softplus and silu per channel.
    fwd = Cost(
        flops=SCAN_FWD_FLOPS * per_state,
        bytes=(4 * per_channel + 2 * bc) * item,
        exp=per_state + 2 * per_channel,
        flop_ceiling="fp32",
    )
    bwd = Cost(
        flops=SCAN_BWD_FLOPS * per_state,
        bytes=(8 * per_channel + 4 * bc) * item,
        exp=per_state + 2 * per_channel,
        flop_ceiling="fp32",
    )
    return cost_of_mode(mode, fwd, bwd)


def mamba_ssm_selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    return selective_scan_fn(u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)


register(
    Benchmark(
        name="ssm.selective_scan",
        description="Mamba's selective scan, out = (scan(u, delta, A, B, C) + D*u) * silu(z); u (B, D, L), N states",
        cases={
            "tiny": [
                selective_case(batch=1, dim=4, length=37, state=4),
                selective_case(batch=2, dim=4, length=19, state=8, layout="group", groups=2),
                selective_case(batch=1, dim=4, length=21, state=4, layout="shared"),
            ],
            "small": [
                selective_case(batch=4, dim=1536, length=2048, state=16),
                selective_case(batch=8, dim=2048, length=2048, state=16),
            ],
            "full": [
                selective_case(batch=8, dim=dim, length=length, state=16)
                for dim in (2048, 5120)
                for length in (2048, 8192)
            ],
        },
        make_inputs=make_selective_inputs,
        reference=Impl("torch_chunked", selective_scan_reference, role="reference", note="vectorized, float32"),
        variants=[Impl("triton", selective_scan, skip_reason=interpreted_bf16, triton=True)],
        peers=[
            Impl(
                "mamba_ssm",
                mamba_ssm_selective_scan,
                role="peer",
                skip_reason=NEEDS_MAMBA_SSM,
                note="selective_scan_fn (CUDA)",
            )
        ],
        cost=selective_cost,
        # As the kernel's tests: 1e-4 of each result's largest magnitude for the float32 state's
        # long sums, plus one ulp of the output dtype, which half-precision results are rounded to.
        tolerances={
            torch.float32: Tolerance(atol=0.0, atol_of_max=1e-4, rtol=0.0),
            torch.float16: Tolerance(atol=0.0, atol_of_max=1e-4, rtol=2.0**-10),
            torch.bfloat16: Tolerance(atol=0.0, atol_of_max=1e-4, rtol=2.0**-7),
        },
        modes=("fwd", "bwd", "fwd_bwd"),
        grad_inputs=("u", "delta", "A", "B", "C", "D", "z", "delta_bias"),
    )
)
