"""``ssm.ssd``: Mamba-2's SSD scan (``mamba_chunk_scan_combined``'s meaning).

Triton against the chunked PyTorch reference, with mamba-ssm's Triton kernel and fla's simple-GLA kernel
as peers (see ``ssd_cost`` and ``fla_simple_gla_ssd``). Its matmuls run on tensor cores. The
cases ending ``s<k>`` pack k sequences into each row (``seq_idx``); their cost counts the
masked-out cross-sequence pairs too, as the kernels compute them.
"""

import dataclasses
import math

import torch
import torch.nn.functional as F

from menagerie.benchmarks import interpreted_bf16
from menagerie.benchmarks.ssm.mamba2_shapes import MAMBA2_2_7B, MAMBA2_370M, Mamba2Mixer
from menagerie.benchmarks.ssm.scans import NEEDS_FLA, NEEDS_MAMBA_SSM
from menagerie.harness.registry import Benchmark, Case, Cost, Impl, Tolerance, cost_of_mode, first_reason, register
from menagerie.kernels.ssm import ssd_chunked_reference, ssd_scan


def ssd_case(*, batch, length, heads, head_dim, state, groups, chunk, sequences=1):
    """``sequences`` > 1: that many sequences of random lengths packed into each row (``seq_idx``)."""
    packed = f"s{sequences}" if sequences > 1 else ""
    return Case(
        f"b{batch}l{length}h{heads}p{head_dim}n{state}g{groups}c{chunk}{packed}",
        dict(
            batch=batch,
            length=length,
            heads=heads,
            head_dim=head_dim,
            state=state,
            groups=groups,
            chunk=chunk,
            sequences=sequences,
        ),
    )


def mamba2_ssd_case(mixer: Mamba2Mixer, *, batch, length, sequences=1):
    """The SSD scan of ``mixer``'s shape."""
    return ssd_case(
        batch=batch,
        length=length,
        heads=mixer.heads,
        head_dim=mixer.head_dim,
        state=mixer.state,
        groups=mixer.groups,
        chunk=mixer.chunk,
        sequences=sequences,
    )


def packed_sequence_ids(batch: int, length: int, sequences: int, generator: torch.Generator) -> torch.Tensor:
    """``(batch, length)`` int32 ids of ``sequences`` sequences per row, cut at random distinct steps."""
    rows = []
    for _ in range(batch):
        starts = torch.zeros(length, dtype=torch.int32)
        starts[1 + torch.randperm(length - 1, generator=generator)[: sequences - 1]] = 1
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
    weights = dict(
        A=-(1.0 + 15.0 * torch.rand(heads, generator=generator)),
        D=1.0 + 0.1 * torch.randn(heads, generator=generator),
        dt_bias=steps + torch.log(-torch.expm1(-steps)),
    )  # inverse softplus
    packed = {}
    if p["sequences"] > 1:
        packed["seq_idx"] = packed_sequence_ids(batch, length, p["sequences"], generator).to(device)
    return {
        **{name: value.to(device, dtype) for name, value in activations.items()},
        **{name: value.to(device) for name, value in weights.items()},
        **packed,
        "chunk_size": p["chunk"],
        "dt_softplus": True,
    }


def _causal_pairs(length: int, chunk: int) -> int:
    """(t, s) pairs with s <= t inside the same chunk: the intra-chunk matmuls' useful entries."""
    full, rest = divmod(length, chunk)
    return full * chunk * (chunk + 1) // 2 + rest * (rest + 1) // 2


def ssd_flops_and_exps(*, batch, length, heads, head_dim, state, groups, chunk) -> tuple[int, int]:
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
    flops, exps = ssd_flops_and_exps(
        batch=p["batch"],
        length=p["length"],
        heads=p["heads"],
        head_dim=p["head_dim"],
        state=p["state"],
        groups=p["groups"],
        chunk=p["chunk"],
    )
    tokens, heads, head_dim = p["batch"] * p["length"], p["heads"], p["head_dim"]
    group_states = p["groups"] * p["state"]
    weights = 3 * heads * 4
    fwd = Cost(
        flops=flops,
        bytes=tokens * (2 * heads * head_dim + heads + 2 * group_states) * dtype.itemsize + weights,
        exp=exps,
    )
    bwd = Cost(
        flops=2 * flops,
        bytes=tokens * (3 * heads * head_dim + 2 * heads + 4 * group_states) * dtype.itemsize + 2 * weights,
        exp=exps + tokens * heads,
    )
    return cost_of_mode(mode, fwd, bwd)


def mamba_ssm_ssd(x, dt, A, B, C, D, dt_bias, chunk_size, dt_softplus, seq_idx=None):
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

    return mamba_chunk_scan_combined(
        x, dt, A, B, C, chunk_size, D=D, dt_bias=dt_bias, dt_softplus=dt_softplus, seq_idx=seq_idx
    )


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


def _packed_skip(case, device, dtype, mode):
    return "packed sequences: the simple-GLA adapter has no seq_idx" if case.params["sequences"] > 1 else None


register(
    Benchmark(
        name="ssm.ssd",
        description="Mamba-2's SSD scan, y = SSD(x, softplus(dt + dt_bias), A, B, C) + D*x; x (B, L, H, P), "
        "B and C (B, L, G, N)",
        cases={
            # chunk 16 is the kernel's smallest; L not a multiple of it, several heads per group;
            # and three packed sequences per row (seq_idx).
            "tiny": [
                ssd_case(batch=1, length=37, heads=2, head_dim=8, state=8, groups=1, chunk=16),
                ssd_case(batch=2, length=21, heads=4, head_dim=4, state=16, groups=2, chunk=16),
                ssd_case(batch=2, length=45, heads=2, head_dim=8, state=8, groups=1, chunk=16, sequences=3),
            ],
            # Mamba-2 370M's SSD, and with four groups of N 64 instead; four sequences packed in a row.
            "small": [
                mamba2_ssd_case(MAMBA2_370M, batch=4, length=2048),
                mamba2_ssd_case(dataclasses.replace(MAMBA2_370M, state=64, groups=4), batch=4, length=2048),
                mamba2_ssd_case(MAMBA2_370M, batch=1, length=8192, sequences=4),
            ],
            # Mamba-2 2.7B's SSD; eight sequences packed in a row.
            "full": [
                mamba2_ssd_case(MAMBA2_2_7B, batch=8, length=4096),
                mamba2_ssd_case(MAMBA2_2_7B, batch=1, length=32768, sequences=8),
            ],
        },
        make_inputs=make_ssd_inputs,
        reference=Impl(
            "torch_chunked",
            ssd_chunked_reference,
            role="reference",
            note="minimal-SSD chunked form, float32 (float64 for the accuracy reference)",
        ),
        variants=[Impl("triton", ssd_scan, skip_reason=interpreted_bf16, triton=True)],
        peers=[
            Impl(
                "mamba_ssm",
                mamba_ssm_ssd,
                role="peer",
                skip_reason=NEEDS_MAMBA_SSM,
                note="mamba_chunk_scan_combined (Triton)",
            ),
            Impl(
                "fla_simple_gla",
                fla_simple_gla_ssd,
                role="peer",
                skip_reason=first_reason(_packed_skip, NEEDS_FLA),
                note="fla chunk_simple_gla (Triton, chunk 64) with q=C, k=dt'B, v=x, g=dt'A; softplus, "
                "head-repeated B and C and D*x in PyTorch",
            ),
        ],
        cost=ssd_cost,
        # As the kernel's tests, of each result's largest magnitude: 1e-4 for float32's long sums; a few
        # roundings of the dtype for the half-precision matmul operands. Plus one ulp of the output dtype.
        tolerances={
            torch.float32: Tolerance(atol=0.0, atol_of_max=1e-4, rtol=0.0),
            torch.float16: Tolerance(atol=0.0, atol_of_max=4 * 2.0**-11, rtol=2.0**-10),
            torch.bfloat16: Tolerance(atol=0.0, atol_of_max=4 * 2.0**-8, rtol=2.0**-7),
        },
        modes=("fwd", "bwd", "fwd_bwd"),
        grad_inputs=("x", "dt", "A", "B", "C", "D", "dt_bias"),
    )
)
