"""The SSM family: ``ssm.linear_scan``, ``ssm.selective_scan``, ``ssm.ssd``, ``ssm.mamba_block`` and
``ssm.mamba2_block``.

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
- ``ssm.ssd``: Mamba-2's SSD scan (``mamba_chunk_scan_combined``'s meaning), Triton against
  the chunked PyTorch reference, with mamba-ssm's Triton kernel and fla's simple-GLA kernel
  as peers (see ``ssd_cost`` and ``fla_simple_gla_ssd``). Its matmuls run on tensor cores. The
  cases ending ``s<k>`` pack k sequences into each row (``seq_idx``); their cost counts the
  masked-out cross-sequence pairs too, as the kernels compute them.
- ``ssm.mamba_block`` and ``ssm.mamba2_block``: a whole Mamba (Mamba-2) block with the
  Triton scan against the same block with the PyTorch scan, forward and backward.
"""

import functools
import importlib
import importlib.util
import math

import torch
import torch.nn.functional as F

from menagerie.benchmarks import interpreted_bf16
from menagerie.harness.registry import Benchmark, Case, Cost, Impl, Tolerance, register
from menagerie.kernels.ssm import (linear_scan, linear_scan_reference, selective_scan, selective_scan_reference,
                         ssd_chunked_reference, ssd_scan)
from menagerie.kernels.ssm.linear_scan_cuda import linear_scan_cuda, unavailable_reason
from menagerie.kernels.ssm.linear_scan_cuda import program as cuda_c_program
from menagerie.models.mamba import MambaBlock
from menagerie.models.mamba2 import Mamba2Block

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


def _fla_skip(case, device, dtype, mode):
    if case.params.get("sequences", 1) > 1:
        return "packed sequences: the simple-GLA adapter has no seq_idx"
    if importlib.util.find_spec("fla") is None:
        return "fla-core is not installed"
    # fla autotunes every kernel, and Triton's interpreter cannot time configurations.
    return None if device.type == "cuda" else "fla's kernels need a GPU (they autotune, which the interpreter cannot)"


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
                note="accelerated_scan.scalar (Triton)"),
           Impl("fla_hgrn_chunk", fla_hgrn("chunk_hgrn"), role="peer", skip_reason=_fla_skip,
                note="fla.ops.hgrn.chunk_hgrn (Triton) on log gates, (B, T, C) copies"),
           Impl("fla_hgrn_recurrent", fla_hgrn("fused_recurrent_hgrn"), role="peer", skip_reason=_fla_skip,
                note="fla.ops.hgrn.fused_recurrent_hgrn (Triton) on log gates, (B, T, C) copies")],
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


@functools.cache
def _mamba_ssm_import_error() -> str | None:
    try:
        importlib.import_module("mamba_ssm")
    except ImportError as error:  # e.g. installed with MAMBA_SKIP_CUDA_BUILD: no selective_scan_cuda
        return f"mamba-ssm is installed but does not import ({error}); it needs its CUDA extensions"
    return None


def _mamba_ssm_skip(case, device, dtype, mode):
    if importlib.util.find_spec("mamba_ssm") is None:
        return "mamba-ssm is not installed"
    if device.type != "cuda":
        return "mamba-ssm runs on CUDA only"
    return _mamba_ssm_import_error()


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


# --- ssm.ssd --------------------------------------------------------------------------

def ssd_case(batch, length, heads, head_dim, state, groups, chunk, sequences=1):
    """``sequences`` > 1: that many sequences of random lengths packed into each row (``seq_idx``)."""
    packed = f"s{sequences}" if sequences > 1 else ""
    return Case(f"b{batch}l{length}h{heads}p{head_dim}n{state}g{groups}c{chunk}{packed}",
                dict(batch=batch, length=length, heads=heads, head_dim=head_dim, state=state, groups=groups,
                     chunk=chunk, sequences=sequences))


def packed_sequence_ids(batch: int, length: int, sequences: int, generator: torch.Generator) -> torch.Tensor:
    """``(batch, length)`` int32 ids of ``sequences`` sequences per row, cut at random distinct steps."""
    rows = []
    for _ in range(batch):
        starts = torch.zeros(length, dtype=torch.int32)
        starts[1 + torch.randperm(length - 1, generator=generator)[:sequences - 1]] = 1
        rows.append(starts.cumsum(0, dtype=torch.int32))
    return torch.stack(rows)


def make_ssd_inputs(case: Case, dtype: torch.dtype, device: torch.device, seed: int) -> dict:
    # As in a Mamba-2 block: raw steps around 0 with a bias putting softplus(bias) log-uniformly in
    # [1e-3, 1e-1], A = -(1 to 16), D around 1 (the block's initialisation); no z (the block gates in its norm).
    p = case.params
    generator = torch.Generator().manual_seed(seed)
    batch, length, heads, groups, state = p["batch"], p["length"], p["heads"], p["groups"], p["state"]
    activations = dict(
        x=torch.randn(batch, length, heads, p["head_dim"], generator=generator),
        dt=0.5 * torch.randn(batch, length, heads, generator=generator),
        B=torch.randn(batch, length, groups, state, generator=generator),
        C=torch.randn(batch, length, groups, state, generator=generator),
    )
    log_low, log_high = math.log(1e-3), math.log(1e-1)
    steps = torch.exp(log_low + (log_high - log_low) * torch.rand(heads, generator=generator))
    weights = dict(A=-(1.0 + 15.0 * torch.rand(heads, generator=generator)),
                   D=1.0 + 0.1 * torch.randn(heads, generator=generator),
                   dt_bias=steps + torch.log(-torch.expm1(-steps)))  # inverse softplus
    packed = {}
    if p["sequences"] > 1:
        packed["seq_idx"] = packed_sequence_ids(batch, length, p["sequences"], generator).to(device)
    return {**{name: value.to(device, dtype) for name, value in activations.items()},
            **{name: value.to(device) for name, value in weights.items()},
            **packed, "chunk_size": p["chunk"], "dt_softplus": True}


def _causal_pairs(length: int, chunk: int) -> int:
    """(t, s) pairs with s <= t inside the same chunk: the intra-chunk matmuls' useful entries."""
    full, rest = divmod(length, chunk)
    return full * chunk * (chunk + 1) // 2 + rest * (rest + 1) // 2


def ssd_flops_and_exps(batch, length, heads, head_dim, state, groups, chunk) -> tuple[int, int]:
    """Forward matmul FLOPs and transcendentals of the chunked SSD (see ``ssd_cost``)."""
    pairs = _causal_pairs(length, chunk)
    flops = 2 * batch * (groups * state * pairs + heads * head_dim * pairs + 2 * heads * head_dim * state * length)
    exps = batch * heads * (pairs + 4 * length)
    return flops, exps


def ssd_cost(case: Case, mode: str, dtype: torch.dtype) -> Cost:
    """Work of the chunked SSD for b batches of L steps, h heads of P channels, N states, G groups, chunk T.

    FLOPs (matmuls only; the elementwise work is O(b L h (P + N))): with ``pairs`` the causal
    (t, s) pairs inside chunks (``T (T + 1) / 2`` per full chunk), the forward has
    ``C B^T`` per group, ``2 b G N pairs``; the masked product with ``dt' x`` per head,
    ``2 b h P pairs``; each chunk's state from its steps, ``2 b h P N L``; and the entering state
    to the outputs, ``2 b h P N L``. The backward forms two products for each of the forward's,
    twice its FLOPs.

    Bytes (minimal): the forward reads x, dt, B, C and writes y, ``b L (2 h P + h + 2 G N)``
    elements of the dtype, plus A, D and dt_bias (float32); the backward reads those inputs and
    dy and writes dx, ddt, dB, dC, ``b L (3 h P + 2 h + 4 G N)`` elements, plus the three weights
    and their gradients.

    Transcendentals: the decay ``exp(cum_t - cum_s)`` of every causal pair and head, plus four per
    step and head (softplus's exp and log, the decays to the chunk's start and end); the
    backward adds the softplus derivative's sigmoid.
    """
    p = case.params
    flops, exps = ssd_flops_and_exps(p["batch"], p["length"], p["heads"], p["head_dim"], p["state"], p["groups"],
                                     p["chunk"])
    tokens, heads, head_dim, group_states = p["batch"] * p["length"], p["heads"], p["head_dim"], p["groups"] * p["state"]
    weights = 3 * heads * 4
    fwd = Cost(flops=flops, bytes=tokens * (2 * heads * head_dim + heads + 2 * group_states) * dtype.itemsize + weights,
               exp=exps)
    bwd = Cost(flops=2 * flops,
               bytes=tokens * (3 * heads * head_dim + 2 * heads + 4 * group_states) * dtype.itemsize + 2 * weights,
               exp=exps + tokens * heads)
    return {"fwd": fwd, "bwd": bwd, "fwd_bwd": fwd + bwd}[mode]


def mamba_ssm_ssd(x, dt, A, B, C, D, dt_bias, chunk_size, dt_softplus, seq_idx=None):
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

    return mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, D=D, dt_bias=dt_bias, dt_softplus=dt_softplus,
                                     seq_idx=seq_idx)


def simple_gla_as_ssd(simple_gla, x, dt, A, B, C, D, dt_bias, dt_softplus):
    """The SSD scan through a simple-GLA function ``simple_gla(q, k, v, g, scale=) -> (o, final)``.

    Simple GLA runs ``S_t = exp(g_t) S_{t-1} + k_t v_t^T``, ``o_t = S_t^T q_t`` per head, so
    q = C and k = dt' B (each group's B and C repeated over its heads), v = x and the log decay
    g = dt' A, with scale 1; ``D x`` is added after.
    """
    steps = dt.float() if dt_bias is None else dt.float() + dt_bias.float()
    steps = F.softplus(steps) if dt_softplus else steps
    per_group = x.shape[2] // B.shape[2]
    q = C.repeat_interleave(per_group, dim=2)
    k = (B.float().repeat_interleave(per_group, dim=2) * steps[..., None]).to(x.dtype)
    out, _ = simple_gla(q, k, x, steps * A.float(), scale=1.0)
    return (out.float() + D[:, None] * x.float()).to(x.dtype)


def fla_simple_gla_ssd(x, dt, A, B, C, D, dt_bias, chunk_size, dt_softplus):
    """fla's ``chunk_simple_gla`` (with its own chunk size) as the SSD scan."""
    from fla.ops.simple_gla import chunk_simple_gla

    return simple_gla_as_ssd(chunk_simple_gla, x, dt, A, B, C, D, dt_bias, dt_softplus)


register(Benchmark(
    name="ssm.ssd",
    description="Mamba-2's SSD scan, y = SSD(x, softplus(dt + dt_bias), A, B, C) + D*x; x (B, L, H, P), "
                "B and C (B, L, G, N)",
    cases={
        # chunk 16 is the kernel's smallest; L not a multiple of it, several heads per group;
        # and three packed sequences per row (seq_idx).
        "tiny": [ssd_case(1, 37, 2, 8, 8, 1, 16), ssd_case(2, 21, 4, 4, 16, 2, 16),
                 ssd_case(2, 45, 2, 8, 8, 1, 16, sequences=3)],
        # Mamba-2 370M's SSD (32 heads of 64), with one and with four groups; four sequences packed in a row.
        "small": [ssd_case(4, 2048, 32, 64, 128, 1, 256), ssd_case(4, 2048, 32, 64, 64, 4, 256),
                  ssd_case(1, 8192, 32, 64, 128, 1, 256, sequences=4)],
        # Mamba-2 2.7B's SSD: d_model 2560, 80 heads of 64, N 128; eight sequences packed in a row.
        "full": [ssd_case(8, 4096, 80, 64, 128, 1, 256), ssd_case(1, 32768, 80, 64, 128, 1, 256, sequences=8)],
    },
    make_inputs=make_ssd_inputs,
    reference=Impl("torch_chunked", ssd_chunked_reference, role="reference",
                   note="minimal-SSD chunked form, float32 (float64 for the accuracy reference)"),
    variants=[Impl("triton", ssd_scan, skip_reason=interpreted_bf16, triton=True)],
    peers=[Impl("mamba_ssm", mamba_ssm_ssd, role="peer", skip_reason=_mamba_ssm_skip,
                note="mamba_chunk_scan_combined (Triton)"),
           Impl("fla_simple_gla", fla_simple_gla_ssd, role="peer", skip_reason=_fla_skip,
                note="fla chunk_simple_gla (Triton, chunk 64) with q=C, k=dt'B, v=x, g=dt'A; softplus, "
                     "head-repeated B and C and D*x in PyTorch")],
    cost=ssd_cost,
    # As the kernel's tests, of each result's largest magnitude: 1e-4 for float32's long sums; a few
    # roundings of the dtype for the half-precision matmul operands. Plus one ulp of the output dtype.
    tolerances={torch.float32: Tolerance(atol=0.0, atol_of_max=1e-4, rtol=0.0),
                torch.float16: Tolerance(atol=0.0, atol_of_max=4 * 2.0 ** -11, rtol=2.0 ** -10),
                torch.bfloat16: Tolerance(atol=0.0, atol_of_max=4 * 2.0 ** -8, rtol=2.0 ** -7)},
    modes=("fwd", "bwd", "fwd_bwd"),
    grad_inputs=("x", "dt", "A", "B", "C", "D", "dt_bias"),
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


# --- ssm.mamba2_block ---------------------------------------------------------------

_MAMBA2_SKELETONS = {}


def mamba2_block_case(batch, length, d_model, state, head_dim, groups, chunk):
    return Case(f"b{batch}l{length}m{d_model}n{state}p{head_dim}g{groups}c{chunk}",
                dict(batch=batch, length=length, d_model=d_model, state=state, head_dim=head_dim, groups=groups,
                     chunk=chunk))


def make_mamba2_block_inputs(case: Case, dtype: torch.dtype, device: torch.device, seed: int) -> dict:
    p = case.params
    sizes = dict(d_state=p["state"], ngroups=p["groups"], chunk_size=p["chunk"])  # what the parameters' shapes don't fix
    torch.manual_seed(seed)  # the block's own initialisation, reproducible per seed
    block = Mamba2Block(p["d_model"], headdim=p["head_dim"], **sizes)
    hidden = torch.randn(p["batch"], p["length"], p["d_model"], generator=torch.Generator().manual_seed(seed))
    return {"hidden": hidden.to(device, dtype), **sizes,
            **{name: value.detach().to(device, dtype) for name, value in block.named_parameters()}}


def _mamba2_block_forward(scan):
    def forward(hidden, d_state, ngroups, chunk_size, **parameters):
        headdim = parameters["norm.weight"].shape[0] // parameters["A_log"].shape[0]
        key = (hidden.shape[-1], d_state, headdim, ngroups, chunk_size, scan)
        if key not in _MAMBA2_SKELETONS:  # a block whose parameters functional_call swaps for the inputs'
            _MAMBA2_SKELETONS[key] = Mamba2Block(hidden.shape[-1], d_state=d_state, headdim=headdim, ngroups=ngroups,
                                                 chunk_size=chunk_size, scan=scan)
        return torch.func.functional_call(_MAMBA2_SKELETONS[key], parameters, (hidden,))
    return forward


MAMBA2_BLOCK_PARAMETERS = tuple(name for name, _ in Mamba2Block(16, d_state=4, headdim=8).named_parameters())


def mamba2_block_cost(case: Case, mode: str, dtype: torch.dtype) -> Cost:
    """The projections' GEMMs plus the SSD's matmuls (``ssd_cost``); bytes: the weights and each
    intermediate (in-projection, convolution and scan outputs, gated norm) written and read once."""
    p = case.params
    tokens, d_model, state, groups = p["batch"] * p["length"], p["d_model"], p["state"], p["groups"]
    inner = 2 * d_model
    heads = inner // p["head_dim"]
    conv_channels = inner + 2 * groups * state
    in_features = inner + conv_channels + heads
    ssd_flops, ssd_exps = ssd_flops_and_exps(p["batch"], p["length"], heads, p["head_dim"], state, groups, p["chunk"])
    flops = 2 * tokens * (d_model * in_features + inner * d_model) + ssd_flops
    weights = d_model * in_features + inner * d_model + conv_channels * 5 + heads * 3 + inner  # conv: width 4 + bias
    activations = tokens * (2 * d_model + 2 * (in_features + conv_channels + 2 * inner))
    exps = ssd_exps + tokens * (conv_channels + inner)  # SiLU after the convolution and on the gate
    fwd = Cost(flops=flops, bytes=(weights + activations) * dtype.itemsize, exp=exps)
    bwd = Cost(flops=2 * flops, bytes=2 * (weights + activations) * dtype.itemsize, exp=exps)
    return {"fwd": fwd, "bwd": bwd, "fwd_bwd": fwd + bwd}[mode]


register(Benchmark(
    name="ssm.mamba2_block",
    description="a Mamba-2 block (in-projection, causal conv, SSD scan, gated RMSNorm, out-projection), "
                "(B, L, d_model)",
    cases={
        "tiny": [mamba2_block_case(1, 37, 16, 8, 8, 2, 16)],
        "small": [mamba2_block_case(8, 2048, 1024, 128, 64, 1, 256)],  # Mamba-2 370M
        "full": [mamba2_block_case(8, 4096, 2560, 128, 64, 1, 256)],  # Mamba-2 2.7B
    },
    make_inputs=make_mamba2_block_inputs,
    reference=Impl("torch_reference_scan", _mamba2_block_forward(ssd_chunked_reference), role="reference",
                   note="the block with the chunked PyTorch SSD"),
    variants=[Impl("triton_scan", _mamba2_block_forward(ssd_scan), skip_reason=interpreted_bf16, triton=True)],
    cost=mamba2_block_cost,
    # Projections and the norm around the scan add matmul rounding, as for ssm.mamba_block.
    tolerances={torch.float32: Tolerance(atol=1e-4, rtol=1e-3), torch.float16: Tolerance(atol=1e-2, rtol=1e-2),
                torch.bfloat16: Tolerance(atol=5e-2, rtol=5e-2)},
    modes=("fwd", "bwd", "fwd_bwd"),
    grad_inputs=("hidden", *MAMBA2_BLOCK_PARAMETERS),
))
