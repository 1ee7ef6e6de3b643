"""``attention.sliding_window`` and ``attention.dense_causal``.

Sliding-window attention with sink tokens (semantics in kernels/attention) against
the dense-masked PyTorch reference and, when present, peers: PyTorch SDPA with the
boolean mask, FlexAttention (compiled) with the same mask as a block mask, and
flash-attn's ``window_size`` (which has no sink tokens, so it runs only the
sink-free cases). ``attention.dense_causal`` is the yardstick: the same kernels
with a window covering the whole sequence.

Cost model: useful FLOPs are ``4·D`` per visible (query, key) pair forward (two
matmuls), 2.5× that backward; one exp per visible pair each way; minimal bytes
read q, k, v and write the output (and the log-sum-exp) forward, and read q, k, v,
o, dO, lse and write dq, dk, dv backward. ``extra`` records the FLOPs of the tiles
the kernel actually executes at a 128×64 tiling, masked elements included.
"""

import importlib.util

import torch
import torch.nn.functional as F

from benchmarks import interpreted_bf16
from harness.registry import Benchmark, Case, Cost, Impl, Tolerance, register
from kernels.attention import (sliding_window_attention, sliding_window_attention_reference,
                               sliding_window_mask, sliding_window_mask_mod, visible_pairs)
from kernels.attention.sliding_window import visited_key_tiles

BACKWARD_FLOP_FACTOR = 2.5
# Tiling at which executed-tile FLOPs are reported (the first of the GPU configurations).
REPORTED_TILE = (128, 64)

# As the kernel's tests (tests/attention/test_sliding_window.py): half-precision probabilities
# are rounded to the input dtype before their matmuls, ~10 units of roundoff of fp16 / bf16;
# fp32 only accumulation order and the GPU's approximate exp2 / log2.
TOLERANCES = {
    torch.float32: Tolerance(atol=1e-4, rtol=1e-4),
    torch.float16: Tolerance(atol=1e-2, rtol=1e-2),
    torch.bfloat16: Tolerance(atol=8e-2, rtol=8e-2),
}


def case(batch, heads, kv_heads, seqlen, head_dim, window, sinks, causal=True, q_len=None):
    q_len = q_len or seqlen
    name = f"b{batch}h{heads}kv{kv_heads}s{seqlen}d{head_dim}w{window}k{sinks}" + ("" if causal else "nc")
    if q_len != seqlen:
        name += f"q{q_len}"
    return Case(name, dict(batch=batch, heads=heads, kv_heads=kv_heads, q_len=q_len, kv_len=seqlen,
                           head_dim=head_dim, window=window, sinks=sinks, causal=causal))


def make_inputs(case: Case, dtype: torch.dtype, device: torch.device, seed: int) -> dict:
    p = case.params
    generator = torch.Generator().manual_seed(seed)

    def randn(heads, length):
        return torch.randn(p["batch"], heads, length, p["head_dim"], generator=generator).to(device, dtype)

    return dict(q=randn(p["heads"], p["q_len"]), k=randn(p["kv_heads"], p["kv_len"]),
                v=randn(p["kv_heads"], p["kv_len"]), window=p["window"], sinks=p["sinks"], causal=p["causal"])


def cost(case: Case, mode: str, dtype: torch.dtype) -> Cost:
    p = case.params
    pairs = p["batch"] * p["heads"] * visible_pairs(p["q_len"], p["kv_len"], p["window"], p["sinks"], p["causal"])
    fwd_flops = 4 * p["head_dim"] * pairs
    q_elems = p["batch"] * p["heads"] * p["q_len"] * p["head_dim"]
    kv_elems = p["batch"] * p["kv_heads"] * p["kv_len"] * p["head_dim"]
    lse_bytes = 4 * p["batch"] * p["heads"] * p["q_len"]
    item = dtype.itemsize
    block_m, block_n = REPORTED_TILE
    tiles = sum(map(len, visited_key_tiles(p["q_len"], p["kv_len"], p["window"], p["sinks"], p["causal"],
                                           block_m, block_n)))
    executed = 4 * p["head_dim"] * block_m * block_n * tiles * p["batch"] * p["heads"]
    fwd = Cost(flops=fwd_flops, bytes=(2 * q_elems + 2 * kv_elems) * item + lse_bytes, exp=pairs,
               extra={"executed_tile_flops_128x64": executed})
    bwd = Cost(flops=BACKWARD_FLOP_FACTOR * fwd_flops, bytes=(5 * q_elems + 4 * kv_elems) * item + lse_bytes,
               exp=pairs, extra={"executed_tile_flops_128x64": BACKWARD_FLOP_FACTOR * executed})
    return {"fwd": fwd, "bwd": bwd, "fwd_bwd": fwd + bwd}[mode]


def dense_reference(q, k, v, window, sinks, causal):
    """The reference in query chunks of 1024, so its scores fit in memory at long lengths."""
    return sliding_window_attention_reference(q, k, v, window, sinks, causal, query_chunk=1024)


def sdpa_with_mask(q, k, v, window, sinks, causal):
    mask = sliding_window_mask(q.shape[-2], k.shape[-2], window, sinks, causal, device=q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=q.shape[1] != k.shape[1])


_flex_cache = {}


def flex_attention_block_mask(q, k, v, window, sinks, causal):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    key = (q.shape[-2], k.shape[-2], window, sinks, causal, q.device)
    if key not in _flex_cache:
        mask_mod = sliding_window_mask_mod(q.shape[-2], k.shape[-2], window, sinks, causal)
        _flex_cache[key] = create_block_mask(mask_mod, None, None, q.shape[-2], k.shape[-2], device=q.device)
    compiled = _flex_cache.setdefault("compiled", torch.compile(flex_attention, dynamic=False))
    return compiled(q, k, v, block_mask=_flex_cache[key], enable_gqa=q.shape[1] != k.shape[1])


def flash_attn_window(q, k, v, window, sinks, causal):
    from flash_attn import flash_attn_func

    out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=causal,
                          window_size=(window, 0 if causal else window))
    return out.transpose(1, 2)


def _flex_skip(case, device, dtype, mode):
    if mode != "fwd" and device.type == "cpu":
        return "FlexAttention has no backward on the CPU"
    return None


def _flash_attn_skip(case, device, dtype, mode):
    if importlib.util.find_spec("flash_attn") is None:
        return "flash-attn is not installed"
    if device.type != "cuda":
        return "flash-attn runs on CUDA only"
    if dtype == torch.float32:
        return "flash-attn supports fp16 and bf16 only"
    if case.params["sinks"]:
        return "flash-attn has no sink tokens; it runs the sinks=0 cases"
    return None


def _impls():
    return dict(
        reference=Impl("torch_dense", dense_reference, role="reference",
                       note="dense masked scores in query chunks, float32 accumulation"),
        variants=[Impl("triton", sliding_window_attention, skip_reason=interpreted_bf16, triton=True)],
        peers=[
            Impl("sdpa_mask", sdpa_with_mask, role="peer", note="F.scaled_dot_product_attention, boolean mask"),
            Impl("flex_attention", flex_attention_block_mask, role="peer", skip_reason=_flex_skip,
                 note="compiled, block mask from the same mask", poison=False),
            Impl("flash_attn", flash_attn_window, role="peer", skip_reason=_flash_attn_skip,
                 note="window_size, without sinks"),
        ],
    )


COMMON = dict(make_inputs=make_inputs, cost=cost, tolerances=TOLERANCES, modes=("fwd", "bwd", "fwd_bwd"),
              grad_inputs=("q", "k", "v"))

register(Benchmark(
    name="attention.sliding_window",
    description="sliding-window attention with sink tokens; q (B, H, Sq, D), k, v (B, Hkv, Sk, D)",
    cases={
        "tiny": [case(1, 2, 1, 67, 16, window=8, sinks=2), case(1, 2, 2, 40, 32, window=5, sinks=1, causal=False)],
        "small": [case(4, 8, 8, 2048, 64, window=256, sinks=4), case(2, 16, 4, 4096, 128, window=1024, sinks=4),
                  case(2, 16, 16, 4096, 128, window=1024, sinks=0)],
        "full": [case(8, 16, 16, 8192, 128, window=window, sinks=4) for window in (256, 1024, 4096)]
        + [case(8, 16, 16, 8192, 128, window=1024, sinks=0), case(1, 16, 16, 32768, 128, window=4096, sinks=4)],
    },
    **_impls(), **COMMON,
))

register(Benchmark(
    name="attention.dense_causal",
    description="causal attention with the window covering the whole sequence (the yardstick)",
    cases={
        "tiny": [case(1, 2, 2, 67, 16, window=67, sinks=0)],
        "small": [case(4, 16, 16, 2048, 128, window=2048, sinks=0)],
        "full": [case(8, 16, 16, 8192, 128, window=8192, sinks=0)],
    },
    **_impls(), **COMMON,
))
