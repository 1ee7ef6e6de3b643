"""The TopK sparse-autoencoder family: ``sae.encode``, ``sae.decode`` and ``sae.train_step``.

Rows: the dense PyTorch SAE (full matmuls, ``torch.topk``; the reference), the common
sparse baseline (``torch.topk`` + ``F.embedding_bag``, a peer row) and the Triton
kernels (fused encoder + top-k, gather decoder fused with the MSE, sparse backward).

Inputs are planted sparse codes, as SAE activations are: each row of ``x`` is ``k``
unit-norm dictionary rows with weights in [1, 2] plus noise (0.1 per coordinate), and
the encoder is near the decoder's transpose (as after the usual initialisation), so
each row's top ``k`` stand clear of the rest and a near-tie at the selection boundary
(where two correct implementations may pick differently) is rare.

Cost model: the encoder GEMM (``2 N d M`` FLOPs at the matmul rate) is the floor of
the encoder and of the step; the sparse parts add ``2 N k d`` FLOPs per gathered
pass and their minimal bytes (each used decoder row once, the dense weight gradients
written once).
"""

import torch

from menagerie.benchmarks import interpreted_bf16
from menagerie.harness.registry import Benchmark, Case, Cost, Impl, Tolerance, cost_of_mode, register
from menagerie.kernels.sae import (
    decode_dense,
    decode_embedding_bag,
    sparse_decode,
    sparse_decode_mse,
    topk_encode,
    topk_encode_dense,
)

ACCURACY_ROWS_PER_CHUNK = 256


def sae_case(*, rows, dim, latents, k):
    return Case(f"n{rows}d{dim}m{latents}k{k}", dict(rows=rows, dim=dim, latents=latents, k=k))


CASES = {
    # Tiny: d large against k, so even at CPU sizes the planted latents stand clear of the rest.
    "tiny": [sae_case(rows=67, dim=256, latents=300, k=4), sae_case(rows=19, dim=128, latents=130, k=1)],
    "small": [sae_case(rows=4096, dim=768, latents=16384, k=32)],
    "full": [sae_case(rows=8192, dim=4096, latents=131072, k=64), sae_case(rows=8192, dim=768, latents=32768, k=32)],
}


def _planted(case: Case, seed: int):
    p = case.params
    generator = torch.Generator().manual_seed(seed)
    rows, dim, latents, k = p["rows"], p["dim"], p["latents"], p["k"]
    W_dec = torch.randn(latents, dim, generator=generator)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    # k distinct latents per row: evenly spaced positions from a random start in a random order.
    offsets = torch.randint(0, latents, (rows, 1), generator=generator)
    indices = torch.randperm(latents, generator=generator)[(offsets + torch.arange(k) * (latents // k)) % latents]
    weights = 1 + torch.rand(rows, k, generator=generator)
    b_dec = 0.1 * torch.randn(dim, generator=generator)
    x = torch.nn.functional.embedding_bag(indices, W_dec, per_sample_weights=weights, mode="sum") + b_dec
    x += 0.1 * torch.randn(rows, dim, generator=generator)
    b_enc = 0.01 * torch.randn(latents, generator=generator)
    # An encoder near the decoder's transpose, not equal to it: with tied weights the
    # residual is orthogonal to each chosen row and the gradients are tiny differences.
    W_enc_rows = torch.randn(latents, dim, generator=generator)
    W_enc_rows = W_dec + 0.5 * W_enc_rows / W_enc_rows.norm(dim=1, keepdim=True)
    return dict(x=x, W_dec=W_dec, W_enc_rows=W_enc_rows, b_enc=b_enc, b_dec=b_dec, indices=indices, weights=weights)


def _encoder_inputs(case, planted, dtype, device):
    # W_enc is (d, M) as the transpose of an (M, d) tensor, the layout models/sae.py keeps.
    return {
        "x": planted["x"].to(device, dtype),
        "W_enc": planted["W_enc_rows"].to(device, dtype).t(),
        "b_enc": planted["b_enc"].to(device, dtype),
        "b_dec": planted["b_dec"].to(device, dtype),
        "k": case.params["k"],
    }


def make_encoder_inputs(case, dtype, device, seed):
    return _encoder_inputs(case, _planted(case, seed), dtype, device)


def make_decoder_inputs(case, dtype, device, seed):
    planted = _planted(case, seed)
    return {
        "values": planted["weights"].to(device, dtype),
        "indices": planted["indices"].to(device),
        "W_dec": planted["W_dec"].to(device, dtype),
        "b_dec": planted["b_dec"].to(device, dtype),
    }


def make_step_inputs(case, dtype, device, seed):
    planted = _planted(case, seed)
    return {**_encoder_inputs(case, planted, dtype, device), "W_dec": planted["W_dec"].to(device, dtype)}


def selection_view(named: dict, inputs: dict) -> dict:
    """Top-k outputs as (sorted values, float64 pre-activation at each chosen index): a near-tie
    picked either way passes; an index whose pre-activation is not its value fails."""
    values, indices = named["out0"], named["out1"]
    x, W_enc, b_enc, b_dec = (inputs[name].double() for name in ("x", "W_enc", "b_enc", "b_dec"))
    chosen = []
    for start in range(0, x.shape[0], ACCURACY_ROWS_PER_CHUNK):
        block = indices[start : start + ACCURACY_ROWS_PER_CHUNK]
        columns = W_enc.t()[block]  # (rows, k, d)
        pre = torch.einsum("nd,nkd->nk", x[start : start + block.shape[0]] - b_dec, columns) + b_enc[block]
        chosen.append(pre.clamp_min(0))
    return {"values": values, "chosen_pre_activations": torch.cat(chosen)}


def _counts(case):
    p = case.params
    return p["rows"], p["dim"], p["latents"], p["k"]


def _encode_cost(case, dtype):
    n, d, m, k = _counts(case)
    return Cost(flops=2 * n * d * m, bytes=(n * d + d * m + m + d) * dtype.itemsize + n * k * (dtype.itemsize + 8))


def _encode_bwd_cost(case, dtype):
    n, d, m, k = _counts(case)  # dW_enc and db_enc written densely, x - b_dec read once
    return Cost(flops=2 * n * k * d, bytes=(d * m + m + n * d) * dtype.itemsize + n * k * (dtype.itemsize + 8))


def _decode_cost(case, dtype):
    n, d, m, k = _counts(case)  # each used decoder row read once
    return Cost(
        flops=2 * n * k * d, bytes=(min(m, n * k) * d + n * d + d) * dtype.itemsize + n * k * (dtype.itemsize + 8)
    )


def _decode_bwd_cost(case, dtype):
    n, d, m, k = _counts(case)  # dvalues (k dots per row) and dW_dec (k rows per token)
    return Cost(
        flops=4 * n * k * d,
        bytes=(n * d + min(m, n * k) * d + m * d + d) * dtype.itemsize + n * k * (2 * dtype.itemsize + 8),
    )


def encode_cost(case, mode, dtype):
    return _encode_cost(case, dtype)


def decode_cost(case, mode, dtype):
    return cost_of_mode(mode, _decode_cost(case, dtype), _decode_bwd_cost(case, dtype))


def step_cost(case, mode, dtype):
    return cost_of_mode(
        mode,
        _encode_cost(case, dtype) + _decode_cost(case, dtype),
        _decode_bwd_cost(case, dtype) + _encode_bwd_cost(case, dtype),
    )


def _tolerances(float32_ulps: int = 128, half_ulps: int = 4) -> dict:
    """A few roundings of the dtype, relative to each element and to the output's largest magnitude
    (long float32 sums carry error on that scale)."""
    tolerances = {}
    for dtype, ulps in ((torch.float32, float32_ulps), (torch.float16, half_ulps), (torch.bfloat16, half_ulps)):
        eps = torch.finfo(dtype).eps
        tolerances[dtype] = Tolerance(atol=0.0, rtol=ulps * eps, atol_of_max=ulps * eps)
    return tolerances


def dense_step(x, W_enc, b_enc, b_dec, W_dec, k):
    values, indices = topk_encode_dense(x, W_enc, b_enc, b_dec, k)
    return (decode_dense(values, indices, W_dec, b_dec) - x).pow(2).mean()


def embedding_bag_step(x, W_enc, b_enc, b_dec, W_dec, k):
    values, indices = topk_encode_dense(x, W_enc, b_enc, b_dec, k)
    return (decode_embedding_bag(values, indices, W_dec, b_dec) - x).pow(2).mean()


def triton_step(x, W_enc, b_enc, b_dec, W_dec, k):
    values, indices = topk_encode(x, W_enc, b_enc, b_dec, k)
    loss, _ = sparse_decode_mse(values, indices, W_dec, b_dec, x, check_index_range=False)
    return loss


register(
    Benchmark(
        name="sae.encode",
        description="(values, indices) = topk(relu((x - b_dec) @ W_enc + b_enc), k); x (N, d), W_enc (d, M)",
        cases=CASES,
        make_inputs=make_encoder_inputs,
        reference=Impl("dense_topk", topk_encode_dense, role="reference", note="matmul + torch.topk"),
        variants=[
            Impl(
                "triton_fused",
                topk_encode,
                skip_reason=interpreted_bf16,
                note="GEMM + ReLU + top-k in one kernel",
                triton=True,
            )
        ],
        cost=encode_cost,
        tolerances=_tolerances(),
        # Forward only: a backward from a random gradient per output position depends on the order
        # of near-equal values; sae.train_step times the encoder's backward under an order-free loss.
        modes=("fwd",),
        accuracy_view=selection_view,
    )
)

register(
    Benchmark(
        name="sae.decode",
        description="recon = sum_j values[:, j] * W_dec[indices[:, j]] + b_dec; values, indices (N, k), W_dec (M, d)",
        cases=CASES,
        make_inputs=make_decoder_inputs,
        reference=Impl("dense", decode_dense, role="reference", note="scatter to (N, M) + matmul"),
        variants=[Impl("triton_gather", sparse_decode, skip_reason=interpreted_bf16, triton=True)],
        peers=[Impl("embedding_bag", decode_embedding_bag, role="peer", note="baseline: F.embedding_bag")],
        cost=decode_cost,
        tolerances=_tolerances(),
        modes=("fwd", "fwd_bwd"),
        grad_inputs=("values", "W_dec", "b_dec"),
    )
)

register(
    Benchmark(
        name="sae.train_step",
        description="MSE of a TopK SAE's reconstruction of x, forward and backward to W_enc, b_enc, b_dec, W_dec",
        cases=CASES,
        make_inputs=make_step_inputs,
        reference=Impl("dense", dense_step, role="reference", note="matmuls + torch.topk"),
        variants=[
            Impl(
                "triton",
                triton_step,
                skip_reason=interpreted_bf16,
                note="fused encoder, decoder fused with the MSE, sparse backward",
                triton=True,
            )
        ],
        peers=[
            Impl(
                "topk_embedding_bag",
                embedding_bag_step,
                role="peer",
                note="baseline: matmul + torch.topk + F.embedding_bag",
            )
        ],
        cost=step_cost,
        # The step chains about eight roundings of the dtype (x - b_dec, values, residual, its
        # gradient, dvalues, the weight-gradient sums), each up to an ulp of the largest gradient.
        tolerances=_tolerances(half_ulps=8),
        modes=("fwd_bwd",),
        grad_inputs=("W_enc", "b_enc", "b_dec", "W_dec"),
    )
)
