"""``attention.sliding_window``, ``attention.dense_causal`` and ``attention.varlen``.

Sliding-window attention with sink tokens (semantics in kernels/attention) against
the dense-masked PyTorch reference and, when present, peers: PyTorch SDPA with the
boolean mask, FlexAttention (compiled) with the same mask as a block mask (softcap as
a ``score_mod``), and flash-attn's ``window_size`` (which has no sink tokens, so it
runs only the sink-free cases). ``attention.dense_causal`` is the yardstick: the same
kernels with a window covering the whole sequence. ``attention.varlen`` packs
sequences of mixed lengths (``sliding_window_attention_varlen``) against the same
batch padded to its longest sequence (``triton_padded``), FlexAttention's document
mask and flash-attn's ``flash_attn_varlen_func``.

The model-shaped cases: Mistral-like (window 4096, GQA 32/8 heads, D 128), Gemma-2-like
(window 4096, softcap 50, 16/8 heads, D 256), D 96 (a head dim that the kernels pad to 128)
and BERT-base-like encoders (12 heads, D 64, not causal, a ±32 band with [CLS] as a sink and
the trailing [SEP] as an end sink), dense and packed.

Cost model: useful FLOPs are ``4·D`` per visible (query, key) pair forward (two
matmuls, the real D), 2.5× that backward; one exp per visible pair each way (two with
softcap: the tanh); minimal bytes read q, k, v and write the output (and the
log-sum-exp) forward, and read q, k, v, o, dO, lse and write dq, dk, dv backward.
``extra`` records the FLOPs of the tiles the kernel actually executes at a 128×64
tiling, masked elements and head-dim padding included.
"""

import functools

import torch
import torch.nn.functional as F
import triton

from menagerie.benchmarks import interpreted_bf16
from menagerie.harness.registry import (
    Benchmark,
    Case,
    Cost,
    Impl,
    PublishedFigure,
    Tolerance,
    cost_of_mode,
    first_reason,
    needs,
    publish,
    register,
)
from menagerie.kernels.attention import (
    sliding_window_attention,
    sliding_window_attention_reference,
    sliding_window_attention_varlen,
    sliding_window_attention_varlen_reference,
    sliding_window_mask,
    sliding_window_mask_mod,
    varlen_mask_mod,
    visible_pairs,
    window_bounds,
)
from menagerie.kernels.attention.tile_ranges import visited_key_tiles

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


def _window_name(window) -> str:
    left, right = window_bounds(window)
    return f"w{left}" if isinstance(window, int) else f"w{left}_{right}".replace("-1", "inf")


def _sinks_name(sinks, end_sinks) -> str:
    return f"k{sinks}" + (f"e{end_sinks}" if end_sinks else "")


def case(*, batch, heads, kv_heads, seqlen, head_dim, window, sinks, causal=True, q_len=None, softcap=0.0, end_sinks=0):
    q_len = q_len or seqlen
    name = f"b{batch}h{heads}kv{kv_heads}s{seqlen}d{head_dim}{_window_name(window)}{_sinks_name(sinks, end_sinks)}" + (
        "" if causal else "nc"
    )
    if q_len != seqlen:
        name += f"q{q_len}"
    if softcap:
        name += f"c{softcap:g}"
    return Case(
        name,
        dict(
            batch=batch,
            heads=heads,
            kv_heads=kv_heads,
            q_len=q_len,
            kv_len=seqlen,
            head_dim=head_dim,
            window=window,
            sinks=sinks,
            end_sinks=end_sinks,
            causal=causal,
            softcap=softcap,
        ),
    )


def make_inputs(case: Case, dtype: torch.dtype, device: torch.device, seed: int) -> dict:
    p = case.params
    generator = torch.Generator().manual_seed(seed)

    def randn(heads, length):
        return torch.randn(p["batch"], heads, length, p["head_dim"], generator=generator).to(device, dtype)

    return dict(
        q=randn(p["heads"], p["q_len"]),
        k=randn(p["kv_heads"], p["kv_len"]),
        v=randn(p["kv_heads"], p["kv_len"]),
        window=p["window"],
        sinks=p["sinks"],
        causal=p["causal"],
        softcap=p["softcap"],
        end_sinks=p["end_sinks"],
    )


def _cost(batch_pairs, executed_tiles, q_rows, kv_rows, p, mode, dtype) -> Cost:
    """``batch_pairs``: visible pairs summed over batch and heads; ``q_rows``/``kv_rows``: query and key
    rows summed over the batch; ``executed_tiles``: visited tiles summed over batch and heads."""
    fwd_flops = 4 * p["head_dim"] * batch_pairs
    q_elems, kv_elems = q_rows * p["heads"] * p["head_dim"], kv_rows * p["kv_heads"] * p["head_dim"]
    lse_bytes = 4 * q_rows * p["heads"]
    item = dtype.itemsize
    block_m, block_n = REPORTED_TILE
    padded_dim = max(16, triton.next_power_of_2(p["head_dim"]))
    executed = 4 * padded_dim * block_m * block_n * executed_tiles
    exps = batch_pairs * (2 if p["softcap"] else 1)
    fwd = Cost(
        flops=fwd_flops,
        bytes=(2 * q_elems + 2 * kv_elems) * item + lse_bytes,
        exp=exps,
        extra={"executed_tile_flops_128x64": executed},
    )
    bwd = Cost(
        flops=BACKWARD_FLOP_FACTOR * fwd_flops,
        bytes=(5 * q_elems + 4 * kv_elems) * item + lse_bytes,
        exp=exps,
        extra={"executed_tile_flops_128x64": BACKWARD_FLOP_FACTOR * executed},
    )
    return cost_of_mode(mode, fwd, bwd)


def cost(case: Case, mode: str, dtype: torch.dtype) -> Cost:
    p = case.params
    pairs = visible_pairs(p["q_len"], p["kv_len"], p["window"], p["sinks"], p["causal"], p["end_sinks"])
    tiles = sum(
        map(
            len,
            visited_key_tiles(
                p["q_len"], p["kv_len"], p["window"], p["sinks"], p["causal"], *REPORTED_TILE, p["end_sinks"]
            ),
        )
    )
    scale = p["batch"] * p["heads"]
    return _cost(scale * pairs, scale * tiles, p["batch"] * p["q_len"], p["batch"] * p["kv_len"], p, mode, dtype)


def dense_reference(q, k, v, window, sinks, causal, softcap, end_sinks):
    """The reference in query chunks of 1024, so its scores fit in memory at long lengths."""
    return sliding_window_attention_reference(
        q, k, v, window, sinks, causal, query_chunk=1024, softcap=softcap, end_sinks=end_sinks
    )


def sdpa_with_mask(q, k, v, window, sinks, causal, softcap, end_sinks):
    mask = sliding_window_mask(q.shape[-2], k.shape[-2], window, sinks, causal, device=q.device, end_sinks=end_sinks)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=q.shape[1] != k.shape[1])


_flex_cache = {}


@functools.cache
def _compiled_flex_attention():
    """FlexAttention under ``torch.compile``, wrapped once: each wrapper keeps its own compiled graphs."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def _flex(q, k, v, mask_key, mask_mod, q_len, kv_len, softcap):
    """Compiled FlexAttention with a cached block mask; softcap as a ``score_mod`` on the scaled score."""
    from torch.nn.attention.flex_attention import create_block_mask

    if mask_key not in _flex_cache:
        _flex_cache[mask_key] = create_block_mask(mask_mod(), None, None, q_len, kv_len, device=q.device)
    return _compiled_flex_attention()(
        q,
        k,
        v,
        score_mod=_softcap_mod(softcap) if softcap else None,
        block_mask=_flex_cache[mask_key],
        enable_gqa=q.shape[1] != k.shape[1],
    )


def _softcap_mod(softcap):
    def score_mod(score, batch, head, q_idx, kv_idx):
        return softcap * torch.tanh(score / softcap)

    return score_mod


def flex_attention_block_mask(q, k, v, window, sinks, causal, softcap, end_sinks):
    q_len, kv_len = q.shape[-2], k.shape[-2]
    key = (q_len, kv_len, window_bounds(window), sinks, end_sinks, causal, q.device)
    return _flex(
        q,
        k,
        v,
        key,
        lambda: sliding_window_mask_mod(q_len, kv_len, window, sinks, causal, end_sinks),
        q_len,
        kv_len,
        softcap,
    )


def flash_attn_window(q, k, v, window, sinks, causal, softcap, end_sinks):
    from flash_attn import flash_attn_func

    out = flash_attn_func(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        causal=causal,
        window_size=window_bounds(window),
        softcap=softcap,
    )
    return out.transpose(1, 2)


def _sdpa_skip(case, device, dtype, mode):
    return "SDPA has no logit softcap" if case.params["softcap"] else None


def _flex_skip(case, device, dtype, mode):
    if mode != "fwd" and device.type == "cpu":
        return "FlexAttention has no backward on the CPU"
    return None


def _flash_attn_limits(case, device, dtype, mode):
    if dtype == torch.float32:
        return "flash-attn supports fp16 and bf16 only"
    if case.params["sinks"] or case.params["end_sinks"]:
        return "flash-attn has no sink tokens; it runs the cases without sinks"
    return None


_flash_attn_skip = first_reason(needs("flash-attn", module="flash_attn", cuda=True), _flash_attn_limits)


def _impls():
    return dict(
        reference=Impl(
            "torch_dense",
            dense_reference,
            role="reference",
            note="dense masked scores in query chunks, float32 accumulation",
        ),
        variants=[Impl("triton", sliding_window_attention, skip_reason=interpreted_bf16, triton=True)],
        peers=[
            Impl(
                "sdpa_mask",
                sdpa_with_mask,
                role="peer",
                skip_reason=_sdpa_skip,
                note="F.scaled_dot_product_attention, boolean mask",
            ),
            Impl(
                "flex_attention",
                flex_attention_block_mask,
                role="peer",
                skip_reason=_flex_skip,
                note="compiled, block mask from the same mask, softcap as score_mod",
                poison=False,
            ),
            Impl(
                "flash_attn",
                flash_attn_window,
                role="peer",
                skip_reason=_flash_attn_skip,
                note="window_size, softcap, without sinks",
            ),
        ],
    )


COMMON = dict(tolerances=TOLERANCES, modes=("fwd", "bwd", "fwd_bwd"), grad_inputs=("q", "k", "v"))


# Model-shaped layers, as keywords of ``case`` and ``varlen_case``.
# Mistral-7B-like: 32 query heads over 8 key/value heads, D 128, a causal 4096 window, no sinks.
MISTRAL = dict(heads=32, kv_heads=8, head_dim=128, window=4096, sinks=0)
# Gemma-2-9B-like local layer: 16 query heads over 8, D 256, a causal 4096 window, logits capped at 50.
GEMMA2 = dict(heads=16, kv_heads=8, head_dim=256, window=4096, sinks=0, softcap=50.0)
# BERT-base-like encoder layer (12 heads, D 64, not causal): a band of 32, [CLS] as a sink and the trailing [SEP]
# as an end sink, the configuration the sink study (``menagerie study sinks``) runs through the kernel.
BERT_BASE = dict(heads=12, kv_heads=12, head_dim=64, window=32, sinks=1, end_sinks=1, causal=False)


register(
    Benchmark(
        name="attention.sliding_window",
        description="sliding-window attention with sink tokens; q (B, H, Sq, D), k, v (B, Hkv, Sk, D)",
        cases={
            "tiny": [
                case(batch=1, heads=2, kv_heads=1, seqlen=67, head_dim=16, window=8, sinks=2),
                case(batch=1, heads=2, kv_heads=2, seqlen=40, head_dim=32, window=5, sinks=1, causal=False),
                case(
                    batch=1, heads=2, kv_heads=1, seqlen=37, head_dim=40, window=(3, 9), sinks=2, causal=False, q_len=21
                ),
                case(batch=1, heads=2, kv_heads=1, seqlen=21, head_dim=96, window=8, sinks=0),
                case(batch=1, heads=2, kv_heads=1, seqlen=19, head_dim=256, window=8, sinks=0, softcap=2.0),
                case(
                    batch=1, heads=2, kv_heads=2, seqlen=45, head_dim=16, window=4, sinks=1, causal=False, end_sinks=1
                ),
            ],
            "small": [
                case(batch=4, heads=8, kv_heads=8, seqlen=2048, head_dim=64, window=256, sinks=4),
                case(batch=2, heads=16, kv_heads=4, seqlen=4096, head_dim=128, window=1024, sinks=4),
                case(batch=2, heads=16, kv_heads=16, seqlen=4096, head_dim=128, window=1024, sinks=0),
                case(batch=1, seqlen=8192, **MISTRAL),
                case(batch=1, seqlen=8192, **GEMMA2),
                case(batch=2, heads=16, kv_heads=16, seqlen=4096, head_dim=96, window=1024, sinks=4),
                case(batch=8, seqlen=512, **BERT_BASE),
            ],
            "full": [
                case(batch=8, heads=16, kv_heads=16, seqlen=8192, head_dim=128, window=window, sinks=4)
                for window in (256, 1024, 4096)
            ]
            + [
                case(batch=8, heads=16, kv_heads=16, seqlen=8192, head_dim=128, window=1024, sinks=0),
                case(batch=1, heads=16, kv_heads=16, seqlen=32768, head_dim=128, window=4096, sinks=4),
                case(batch=2, seqlen=16384, **MISTRAL),
                case(batch=2, seqlen=16384, **GEMMA2),
                case(batch=8, heads=16, kv_heads=16, seqlen=8192, head_dim=96, window=4096, sinks=4),
                case(batch=64, seqlen=512, **BERT_BASE),
            ],
        },
        make_inputs=make_inputs,
        cost=cost,
        **_impls(),
        **COMMON,
    )
)

register(
    Benchmark(
        name="attention.dense_causal",
        description="causal attention with the window covering the whole sequence (the yardstick)",
        cases={
            "tiny": [case(batch=1, heads=2, kv_heads=2, seqlen=67, head_dim=16, window=67, sinks=0)],
            "small": [case(batch=4, heads=16, kv_heads=16, seqlen=2048, head_dim=128, window=2048, sinks=0)],
            "full": [case(batch=8, heads=16, kv_heads=16, seqlen=8192, head_dim=128, window=8192, sinks=0)],
        },
        make_inputs=make_inputs,
        cost=cost,
        **_impls(),
        **COMMON,
    )
)


# ----------------------------------------------------------------------------------------------
# Packed sequences of mixed lengths
# ----------------------------------------------------------------------------------------------


def varlen_case(*, lengths, heads, kv_heads, head_dim, window, sinks, end_sinks=0, causal=True):
    """Self-attention (each sequence's queries are its keys) over ``lengths`` packed."""
    name = (
        f"n{len(lengths)}t{sum(lengths)}max{max(lengths)}h{heads}kv{kv_heads}d{head_dim}"
        f"{_window_name(window)}{_sinks_name(sinks, end_sinks)}" + ("" if causal else "nc")
    )
    return Case(
        name,
        dict(
            lengths=tuple(lengths),
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            window=window,
            sinks=sinks,
            end_sinks=end_sinks,
            causal=causal,
            softcap=0.0,
        ),
    )


def make_varlen_inputs(case: Case, dtype: torch.dtype, device: torch.device, seed: int) -> dict:
    p = case.params
    generator = torch.Generator().manual_seed(seed)
    total = sum(p["lengths"])
    offsets = torch.tensor([0, *p["lengths"]], dtype=torch.int64).cumsum(0).to(device, torch.int32)

    def randn(heads):
        return torch.randn(total, heads, p["head_dim"], generator=generator).to(device, dtype)

    return dict(
        q=randn(p["heads"]),
        k=randn(p["kv_heads"]),
        v=randn(p["kv_heads"]),
        cu_seqlens_q=offsets,
        cu_seqlens_k=offsets,
        max_seqlen_q=max(p["lengths"]),
        max_seqlen_k=max(p["lengths"]),
        window=p["window"],
        sinks=p["sinks"],
        causal=p["causal"],
        softcap=p["softcap"],
        end_sinks=p["end_sinks"],
    )


def varlen_cost(case: Case, mode: str, dtype: torch.dtype) -> Cost:
    p = case.params
    pairs = sum(visible_pairs(n, n, p["window"], p["sinks"], p["causal"], p["end_sinks"]) for n in p["lengths"])
    tiles = sum(
        len(tiles)
        for n in p["lengths"]
        for tiles in visited_key_tiles(n, n, p["window"], p["sinks"], p["causal"], *REPORTED_TILE, p["end_sinks"])
    )
    total = sum(p["lengths"])
    return _cost(p["heads"] * pairs, p["heads"] * tiles, total, total, p, mode, dtype)


def varlen_reference(
    q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, window, sinks, causal, softcap, end_sinks
):
    """The dense reference per sequence, in query chunks of 1024 as ``dense_reference``."""
    return sliding_window_attention_varlen_reference(
        q,
        k,
        v,
        cu_seqlens_q,
        cu_seqlens_k,
        max_seqlen_q,
        max_seqlen_k,
        window,
        sinks,
        causal,
        softcap,
        query_chunk=1024,
        end_sinks=end_sinks,
    )


def padded_dense(
    q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, window, sinks, causal, softcap, end_sinks
):
    """What packing avoids: each sequence right-padded to the longest, the dense kernel, the real rows
    gathered back. Causal self-attention without end sinks only (a real query never sees a padded key then)."""
    if not causal or end_sinks or cu_seqlens_q is not cu_seqlens_k:  # identity, not equality: no device sync
        raise ValueError(
            "padded_dense: causal self-attention without end sinks only (one offsets tensor for queries and keys)"
        )
    lengths = cu_seqlens_q.diff()
    batch, longest, total = lengths.numel(), max_seqlen_q, q.shape[0]
    sequence = torch.repeat_interleave(torch.arange(batch, device=q.device), lengths, output_size=total)
    rows = sequence * longest + torch.arange(total, device=q.device) - cu_seqlens_q[sequence]

    def pad(packed):
        padded = packed.new_zeros((batch * longest, *packed.shape[1:])).index_copy(0, rows, packed)
        return padded.unflatten(0, (batch, longest)).transpose(1, 2)

    out = sliding_window_attention(pad(q), pad(k), pad(v), window, sinks, causal, softcap=softcap)
    return out.transpose(1, 2).flatten(0, 1).index_select(0, rows)


def flex_attention_document_mask(
    q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, window, sinks, causal, softcap, end_sinks
):
    # Keyed by the offsets tensors' ids (no device sync per call), which stay theirs: the mask keeps them alive.
    key = ("varlen", id(cu_seqlens_q), id(cu_seqlens_k), window_bounds(window), sinks, end_sinks, causal)

    def mask_mod():
        _flex_cache.setdefault("offsets", []).append((cu_seqlens_q, cu_seqlens_k))
        return varlen_mask_mod(cu_seqlens_q, cu_seqlens_k, window, sinks, causal, end_sinks)

    out = _flex(
        q.transpose(0, 1)[None],
        k.transpose(0, 1)[None],
        v.transpose(0, 1)[None],
        key,
        mask_mod,
        q.shape[0],
        k.shape[0],
        softcap,
    )
    return out[0].transpose(0, 1)


def flash_attn_varlen(
    q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, window, sinks, causal, softcap, end_sinks
):
    from flash_attn import flash_attn_varlen_func

    return flash_attn_varlen_func(
        q,
        k,
        v,
        cu_seqlens_q,
        cu_seqlens_k,
        max_seqlen_q,
        max_seqlen_k,
        causal=causal,
        window_size=window_bounds(window),
        softcap=softcap,
    )


# Lengths drawn once (fixed here so the cases never change): a long tail of short documents beside a few
# long ones, as packed pretraining batches hold.
VARLEN_FULL = (8192, 5120, 3000, 2048, 2048, 1500, 1024, 1024, 777, 600, 512, 512, 300, 200, 129, 64, 1)
VARLEN_SMALL = (4096, 2500, 1024, 1024, 600, 300, 200, 129, 64, 1)
# A BERT batch of sentences and paragraphs up to its 512-token limit, packed instead of padded.
VARLEN_BERT = (512, 384, 300, 256, 200, 128, 77, 64, 33, 9)


def _padded_limits(case, device, dtype, mode):
    if not case.params["causal"] or case.params["end_sinks"]:
        return (
            "padding to the longest sequence gives the same answer only for causal attention without end sinks "
            "(a real query would see padded keys)"
        )
    return None


register(
    Benchmark(
        name="attention.varlen",
        description="packed sequences of mixed lengths, causal sliding window; q (total, H, D), k, v (total, Hkv, D)",
        cases={
            "tiny": [
                varlen_case(lengths=(1, 20, 9), heads=2, kv_heads=1, head_dim=32, window=8, sinks=2),
                varlen_case(lengths=(17, 5), heads=2, kv_heads=2, head_dim=16, window=(6, 0), sinks=0),
                varlen_case(
                    lengths=(13, 6, 20), heads=2, kv_heads=2, head_dim=16, window=3, sinks=1, end_sinks=1, causal=False
                ),
            ],
            "small": [
                varlen_case(lengths=VARLEN_SMALL, heads=16, kv_heads=4, head_dim=128, window=1024, sinks=4),
                varlen_case(lengths=VARLEN_SMALL, **MISTRAL),
                varlen_case(lengths=VARLEN_BERT, **BERT_BASE),
            ],
            "full": [
                varlen_case(lengths=VARLEN_FULL, heads=16, kv_heads=4, head_dim=128, window=1024, sinks=4),
                varlen_case(lengths=VARLEN_FULL, **MISTRAL),
                varlen_case(lengths=VARLEN_BERT * 8, **BERT_BASE),
            ],
        },
        make_inputs=make_varlen_inputs,
        cost=varlen_cost,
        reference=Impl("torch_dense", varlen_reference, role="reference", note="the dense reference per sequence"),
        variants=[
            Impl("triton", sliding_window_attention_varlen, skip_reason=interpreted_bf16, triton=True),
            Impl(
                "triton_padded",
                padded_dense,
                skip_reason=first_reason(_padded_limits, interpreted_bf16),
                triton=True,
                note="padded to the longest sequence, dense kernel, real rows gathered",
            ),
        ],
        peers=[
            Impl(
                "flex_attention",
                flex_attention_document_mask,
                role="peer",
                skip_reason=_flex_skip,
                note="compiled, document mask over the packed sequence",
                poison=False,
            ),
            Impl(
                "flash_attn",
                flash_attn_varlen,
                role="peer",
                skip_reason=_flash_attn_skip,
                note="flash_attn_varlen_func, without sinks",
            ),
        ],
        **COMMON,
    )
)

# Published attention kernel figures, set beside this family's results on a device's site page (the papers' abstracts).
publish(
    PublishedFigure(
        "attention (FlashAttention-3, FP16 forward)",
        "H100",
        "attention forward throughput, up to",
        740,
        "TFLOP/s",
        "Shah et al., FlashAttention-3, arXiv:2407.08608 (2024), abstract: "
        "up to 740 TFLOPs/s (75% utilization) in FP16 on H100",
    )
)
publish(
    PublishedFigure(
        "attention (FlashAttention-2)",
        "A100",
        "attention throughput, up to",
        73,
        "% of the peak FLOP/s",
        "Dao, FlashAttention-2, arXiv:2307.08691 (2023), abstract: 50-73% of the theoretical maximum FLOPs/s on A100",
    )
)
