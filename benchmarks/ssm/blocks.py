"""``ssm.mamba_block`` and ``ssm.mamba2_block``: a whole Mamba (Mamba-2) block with the Triton scan against the
same block with the PyTorch scan, forward and backward.

The parameters are inputs (so the harness checks their gradients); each implementation runs them through a
skeleton block with ``torch.func.functional_call``.
"""

import functools

import torch

from menagerie.benchmarks import interpreted_bf16
from menagerie.benchmarks.ssm.mamba2_shapes import MAMBA2_2_7B, MAMBA2_370M, Mamba2Mixer
from menagerie.benchmarks.ssm.ssd import ssd_flops_and_exps
from menagerie.harness.registry import Benchmark, Case, Cost, Impl, Tolerance, cost_of_mode, register
from menagerie.kernels.ssm import selective_scan, selective_scan_reference, ssd_chunked_reference, ssd_scan
from menagerie.models.mamba import MambaBlock
from menagerie.models.mamba2 import Mamba2Block

# Projections (and Mamba-2's norm) around the scan add matmul rounding: a little looser than the scans alone.
BLOCK_TOLERANCES = {
    torch.float32: Tolerance(atol=1e-4, rtol=1e-3),
    torch.float16: Tolerance(atol=1e-2, rtol=1e-2),
    torch.bfloat16: Tolerance(atol=5e-2, rtol=5e-2),
}


# --- ssm.mamba_block ----------------------------------------------------------------


def mamba_block_case(*, batch, length, d_model, state):
    return Case(f"b{batch}l{length}m{d_model}n{state}", dict(batch=batch, length=length, d_model=d_model, state=state))


@functools.cache
def _mamba_skeleton(d_model: int, d_state: int, scan) -> MambaBlock:
    return MambaBlock(d_model, d_state=d_state, scan=scan)


def make_mamba_block_inputs(case: Case, dtype: torch.dtype, device: torch.device, seed: int) -> dict:
    p = case.params
    torch.manual_seed(seed)  # the block's own initialisation, reproducible per seed
    block = MambaBlock(p["d_model"], d_state=p["state"])
    hidden = torch.randn(p["batch"], p["length"], p["d_model"], generator=torch.Generator().manual_seed(seed))
    return {
        "hidden": hidden.to(device, dtype),
        **{name: value.detach().to(device, dtype) for name, value in block.named_parameters()},
    }


def _mamba_block_forward(scan):
    def forward(hidden, **parameters):
        block = _mamba_skeleton(hidden.shape[-1], parameters["A_log"].shape[1], scan)
        return torch.func.functional_call(block, parameters, (hidden,))

    return forward


MAMBA_BLOCK_PARAMETERS = tuple(name for name, _ in MambaBlock(16, d_state=4).named_parameters())


def mamba_block_cost(case: Case, mode: str, dtype: torch.dtype) -> Cost:
    p = case.params
    tokens, d_model, state = p["batch"] * p["length"], p["d_model"], p["state"]
    inner, rank = 2 * d_model, -(-d_model // 16)
    gemm = 2 * tokens * (d_model * 2 * inner + inner * (rank + 2 * state) + rank * inner + inner * d_model)
    weights = d_model * 2 * inner + inner * (rank + 2 * state) + rank * inner + inner * d_model
    activations = tokens * (2 * d_model + 6 * inner + 2 * state)  # read and write each intermediate once
    fwd = Cost(flops=gemm, bytes=(weights + activations) * dtype.itemsize, exp=tokens * inner * (state + 3))
    bwd = Cost(flops=2 * gemm, bytes=2 * (weights + activations) * dtype.itemsize, exp=tokens * inner * (state + 3))
    return cost_of_mode(mode, fwd, bwd)


register(
    Benchmark(
        name="ssm.mamba_block",
        description="a Mamba block (in-projection, causal conv, selective scan, gated out-projection), (B, L, d_model)",
        cases={
            "tiny": [mamba_block_case(batch=1, length=17, d_model=8, state=4)],
            "small": [mamba_block_case(batch=8, length=2048, d_model=768, state=16)],
            "full": [mamba_block_case(batch=8, length=4096, d_model=2560, state=16)],
        },
        make_inputs=make_mamba_block_inputs,
        reference=Impl(
            "torch_reference_scan",
            _mamba_block_forward(selective_scan_reference),
            role="reference",
            note="the block with the vectorized PyTorch scan",
        ),
        variants=[Impl("triton_scan", _mamba_block_forward(selective_scan), skip_reason=interpreted_bf16, triton=True)],
        cost=mamba_block_cost,
        tolerances=BLOCK_TOLERANCES,
        modes=("fwd", "bwd", "fwd_bwd"),
        grad_inputs=("hidden", *MAMBA_BLOCK_PARAMETERS),
    )
)


# --- ssm.mamba2_block ---------------------------------------------------------------


def mamba2_block_case(mixer: Mamba2Mixer, *, batch, length):
    return Case(
        f"b{batch}l{length}m{mixer.d_model}n{mixer.state}p{mixer.head_dim}g{mixer.groups}c{mixer.chunk}",
        dict(
            batch=batch,
            length=length,
            d_model=mixer.d_model,
            state=mixer.state,
            head_dim=mixer.head_dim,
            groups=mixer.groups,
            chunk=mixer.chunk,
        ),
    )


@functools.cache
def _mamba2_skeleton(d_model: int, d_state: int, headdim: int, ngroups: int, chunk_size: int, scan) -> Mamba2Block:
    return Mamba2Block(d_model, d_state=d_state, headdim=headdim, ngroups=ngroups, chunk_size=chunk_size, scan=scan)


def make_mamba2_block_inputs(case: Case, dtype: torch.dtype, device: torch.device, seed: int) -> dict:
    p = case.params
    # What the parameters' shapes don't fix.
    sizes = dict(d_state=p["state"], ngroups=p["groups"], chunk_size=p["chunk"])
    torch.manual_seed(seed)  # the block's own initialisation, reproducible per seed
    block = Mamba2Block(p["d_model"], headdim=p["head_dim"], **sizes)
    hidden = torch.randn(p["batch"], p["length"], p["d_model"], generator=torch.Generator().manual_seed(seed))
    return {
        "hidden": hidden.to(device, dtype),
        **sizes,
        **{name: value.detach().to(device, dtype) for name, value in block.named_parameters()},
    }


def _mamba2_block_forward(scan):
    def forward(hidden, d_state, ngroups, chunk_size, **parameters):
        headdim = parameters["norm.weight"].shape[0] // parameters["A_log"].shape[0]
        block = _mamba2_skeleton(hidden.shape[-1], d_state, headdim, ngroups, chunk_size, scan)
        return torch.func.functional_call(block, parameters, (hidden,))

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
    ssd_flops, ssd_exps = ssd_flops_and_exps(
        batch=p["batch"],
        length=p["length"],
        heads=heads,
        head_dim=p["head_dim"],
        state=state,
        groups=groups,
        chunk=p["chunk"],
    )
    flops = 2 * tokens * (d_model * in_features + inner * d_model) + ssd_flops
    weights = d_model * in_features + inner * d_model + conv_channels * 5 + heads * 3 + inner  # conv: width 4 + bias
    activations = tokens * (2 * d_model + 2 * (in_features + conv_channels + 2 * inner))
    exps = ssd_exps + tokens * (conv_channels + inner)  # SiLU after the convolution and on the gate
    fwd = Cost(flops=flops, bytes=(weights + activations) * dtype.itemsize, exp=exps)
    bwd = Cost(flops=2 * flops, bytes=2 * (weights + activations) * dtype.itemsize, exp=exps)
    return cost_of_mode(mode, fwd, bwd)


register(
    Benchmark(
        name="ssm.mamba2_block",
        description="a Mamba-2 block (in-projection, causal conv, SSD scan, gated RMSNorm, out-projection), "
        "(B, L, d_model)",
        cases={
            "tiny": [
                mamba2_block_case(Mamba2Mixer(d_model=16, head_dim=8, state=8, groups=2, chunk=16), batch=1, length=37)
            ],
            "small": [mamba2_block_case(MAMBA2_370M, batch=8, length=2048)],
            "full": [mamba2_block_case(MAMBA2_2_7B, batch=8, length=4096)],
        },
        make_inputs=make_mamba2_block_inputs,
        reference=Impl(
            "torch_reference_scan",
            _mamba2_block_forward(ssd_chunked_reference),
            role="reference",
            note="the block with the chunked PyTorch SSD",
        ),
        variants=[Impl("triton_scan", _mamba2_block_forward(ssd_scan), skip_reason=interpreted_bf16, triton=True)],
        cost=mamba2_block_cost,
        tolerances=BLOCK_TOLERANCES,
        modes=("fwd", "bwd", "fwd_bwd"),
        grad_inputs=("hidden", *MAMBA2_BLOCK_PARAMETERS),
    )
)
