import math

import pytest
import torch

from menagerie.kernels.attention import sliding_window_attention, sliding_window_attention_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
gpu_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 arithmetic is wrong in the interpreter")

# Tolerances follow from each dtype's precision, not from what passed: fp16/bf16 round P and dS
# to the input dtype before their matmuls (as FlashAttention does), so allow ~10 units of roundoff
# (eps 9.8e-4 and 7.8e-3); fp32 has no such rounding, only accumulation order and the GPU's
# approximate exp2/log2, allowed at 1e-4 (~1000 ulps, still far below a missing key's ~1e-2 effect).
TOLERANCES = {
    torch.float32: dict(atol=1e-4, rtol=1e-4),
    torch.float16: dict(atol=1e-2, rtol=1e-2),
    torch.bfloat16: dict(atol=8e-2, rtol=8e-2),
}
LSE_TOLERANCE = dict(atol=1e-4, rtol=1e-4)  # the lse sees the inputs only through fp32-accumulated scores

CASES = {
    # name: (batch, heads, kv_heads, q_len, kv_len, head_dim, window, sinks, causal)
    "single-token": (1, 2, 2, 1, 1, 16, 0, 0, True),
    "odd-length": (2, 2, 2, 37, 37, 16, 5, 1, True),
    "beyond-one-tile": (1, 2, 1, 97, 97, 64, 9, 4, True),
    "not-multiple-of-tile": (1, 1, 1, 130, 130, 16, 20, 4, False),
    "wide-window-interior": (1, 2, 2, 130, 130, 16, 48, 4, True),  # window spans unmasked interior tiles
    "wide-window-non-causal": (1, 2, 1, 130, 130, 16, 48, 1, False),
    "fewer-queries": (1, 4, 2, 33, 100, 32, 7, 4, True),
    "fewer-queries-non-causal": (1, 4, 2, 33, 100, 16, 7, 4, False),
    "more-queries-empty-rows": (1, 2, 1, 50, 30, 16, 3, 1, True),
    "more-queries-non-causal": (1, 2, 2, 50, 30, 16, 3, 0, False),  # non-causal rows far before key 0: empty
    "window-zero": (1, 2, 2, 40, 40, 16, 0, 0, True),
    "window-covers-all": (1, 2, 2, 40, 40, 16, 100, 0, True),
    "sinks-after-band": (1, 2, 2, 20, 20, 16, 1, 4, False),
    "sinks-beyond-kv": (1, 2, 2, 40, 40, 16, 2, 100, True),  # every earlier key is a sink: dense causal
    "gqa-one-kv-head": (1, 4, 1, 45, 45, 16, 6, 2, True),
    "head-dim-128": (1, 1, 1, 24, 24, 128, 4, 1, True),
    # FlashAttention's window_size pairs (-1: unbounded), sinks on top.
    "asymmetric": (1, 2, 1, 45, 45, 16, (3, 9), 1, False),
    "asymmetric-causal": (1, 2, 2, 45, 45, 16, (5, 9), 2, True),  # causal: right is 0
    "left-unbounded-fewer-queries": (1, 4, 2, 29, 70, 16, (-1, 8), 0, False),
    "right-unbounded-more-queries": (1, 2, 1, 70, 29, 16, (8, -1), 3, False),
    "unbounded-both": (1, 2, 2, 37, 37, 16, (-1, -1), 0, False),
    "look-ahead-only": (1, 2, 2, 50, 50, 16, (0, 20), 1, False),
    "look-behind-more-queries": (1, 2, 1, 60, 35, 16, (20, 0), 0, False),  # the first 25 queries see nothing
}


def random_qkv(batch, heads, kv_heads, q_len, kv_len, head_dim, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=generator).to(DEVICE, dtype)  # noqa: E731
    return (
        make(batch, heads, q_len, head_dim),
        make(batch, kv_heads, kv_len, head_dim),
        make(batch, kv_heads, kv_len, head_dim),
        make(batch, heads, q_len, head_dim),
    )


def float64_reference(q, k, v, grad_out, window, sinks, causal, grad_lse=None, scale=None, softcap=0.0, end_sinks=0):
    """Output, lse and (dq, dk, dv) of the reference in float64 on the same (rounded) inputs."""
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    out, lse = sliding_window_attention_reference(
        q64, k64, v64, window, sinks, causal, scale=scale, return_lse=True, softcap=softcap, end_sinks=end_sinks
    )
    outputs, grads = (out,), (grad_out.double(),)
    if grad_lse is not None:
        outputs, grads = (out, lse), (grad_out.double(), grad_lse.double())
    return out.detach(), lse.detach(), torch.autograd.grad(outputs, (q64, k64, v64), grads)


def check_against_reference(
    q, k, v, grad_out, window, sinks, causal, grad_lse=None, expected=None, softcap=0.0, end_sinks=0
):
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out, lse = sliding_window_attention(
        q, k, v, window, sinks, causal, return_lse=True, softcap=softcap, end_sinks=end_sinks
    )
    outputs, grads = ((out,), (grad_out,)) if grad_lse is None else ((out, lse), (grad_out, grad_lse))
    dq, dk, dv = torch.autograd.grad(outputs, (q, k, v), grads)
    expected_out, expected_lse, expected_grads = expected or float64_reference(
        q, k, v, grad_out, window, sinks, causal, grad_lse, softcap=softcap, end_sinks=end_sinks
    )
    tol = TOLERANCES[q.dtype]
    assert out.dtype == dq.dtype == dk.dtype == dv.dtype == q.dtype and lse.dtype == torch.float32
    assert out.shape == q.shape and lse.shape == q.shape[:3] and dk.shape == k.shape and dv.shape == v.shape
    torch.testing.assert_close(out.double(), expected_out, **tol)
    torch.testing.assert_close(lse.double(), expected_lse, **LSE_TOLERANCE)  # -inf matches -inf
    for name, grad, expected_grad in zip(("dq", "dk", "dv"), (dq, dk, dv), expected_grads):
        torch.testing.assert_close(grad.double(), expected_grad, **tol, msg=lambda m, name=name: f"{name}: {m}")
    return out, lse, (dq, dk, dv)


@pytest.mark.parametrize("case", list(CASES))
def test_fp32_forward_and_gradients(case):
    batch, heads, kv_heads, q_len, kv_len, head_dim, window, sinks, causal = CASES[case]
    q, k, v, grad_out = random_qkv(batch, heads, kv_heads, q_len, kv_len, head_dim, torch.float32)
    check_against_reference(q, k, v, grad_out, window, sinks, causal)


HALF_CASES = [
    "odd-length",
    "beyond-one-tile",
    "wide-window-interior",
    "fewer-queries",
    "more-queries-empty-rows",
    "gqa-one-kv-head",
    "sinks-after-band",
    "asymmetric",
    "right-unbounded-more-queries",
]


@pytest.mark.parametrize("case", HALF_CASES)
@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=gpu_only)])
def test_half_precision_forward_and_gradients(case, dtype):
    batch, heads, kv_heads, q_len, kv_len, head_dim, window, sinks, causal = CASES[case]
    q, k, v, grad_out = random_qkv(batch, heads, kv_heads, q_len, kv_len, head_dim, dtype, seed=1)
    check_against_reference(q, k, v, grad_out, window, sinks, causal)


# Head dims that are not powers of two are padded inside the kernels (masked loads and stores);
# 8 pads to 16, the smallest tl.dot. Odd lengths, GQA, sinks and a pair window at every size.
@pytest.mark.parametrize("head_dim", [8, 40, 80, 96, 160, 256])
def test_head_dims_multiple_of_8(head_dim):
    q, k, v, grad_out = random_qkv(1, 2, 1, 21, 35, head_dim, torch.float32, seed=head_dim)
    check_against_reference(q, k, v, grad_out, (6, 2), 2, False)


@pytest.mark.parametrize("head_dim", [40, 96, 160])
@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=gpu_only)])
def test_half_precision_head_dims(head_dim, dtype):
    q, k, v, grad_out = random_qkv(1, 2, 1, 21, 21, head_dim, dtype, seed=head_dim + 1)
    check_against_reference(q, k, v, grad_out, 7, 1, True)


# Softcap: scores s -> c * tanh(s / c) before the softmax; the backward multiplies by 1 - tanh^2.
# Inputs scaled up so that the cap bends most scores (|s| / c around 1 and beyond).
@pytest.mark.parametrize(
    "case, softcap, dtype",
    [
        ("odd-length", 0.5, torch.float32),
        ("asymmetric", 1.0, torch.float32),
        ("more-queries-empty-rows", 0.3, torch.float32),
        ("fewer-queries", 2.0, torch.float16),
        pytest.param("fewer-queries", 2.0, torch.bfloat16, marks=gpu_only),
    ],
)
def test_softcap_forward_and_gradients(case, softcap, dtype):
    batch, heads, kv_heads, q_len, kv_len, head_dim, window, sinks, causal = CASES[case]
    q, k, v, grad_out = random_qkv(batch, heads, kv_heads, q_len, kv_len, head_dim, torch.float32, seed=11)
    q, k, v, grad_out = ((2 * q).to(dtype), k.to(dtype), v.to(dtype), grad_out.to(dtype))
    grad_lse = torch.randn(q.shape[:3], generator=torch.Generator().manual_seed(12)).to(DEVICE)
    check_against_reference(q, k, v, grad_out, window, sinks, causal, grad_lse=grad_lse, softcap=softcap)


def test_softcap_changes_the_result():
    # A large cap is no cap; a small one is not (so the tests above cannot pass with softcap ignored).
    q, k, v, _ = random_qkv(1, 2, 2, 21, 21, 16, torch.float32, seed=13)
    plain = sliding_window_attention(2 * q, k, v, 4, 1)
    torch.testing.assert_close(sliding_window_attention(2 * q, k, v, 4, 1, softcap=1e4), plain, atol=1e-4, rtol=1e-4)
    assert (sliding_window_attention(2 * q, k, v, 4, 1, softcap=0.5) - plain).abs().max() > 0.1


@pytest.mark.parametrize("sinks", [0, 1, 4])
def test_sink_counts(sinks):
    q, k, v, grad_out = random_qkv(1, 2, 2, 70, 70, 16, torch.float32, seed=sinks)
    check_against_reference(q, k, v, grad_out, window=8, sinks=sinks, causal=True)


# End sinks: the last keys, seen by every query (causal: from their own position on), as BERT's trailing [SEP].
END_SINK_CASES = {
    # name: (batch, heads, kv_heads, q_len, kv_len, head_dim, window, sinks, end_sinks, causal)
    "cls-and-sep": (2, 2, 2, 70, 70, 16, 3, 1, 1, False),  # the band never reaches the last tile
    "end-sinks-only-causal": (1, 2, 1, 70, 70, 16, 4, 0, 3, True),  # seen only by the last queries
    "end-sinks-before-the-band": (1, 2, 2, 45, 45, 16, 2, 0, 30, True),  # they reach back past some bands
    "end-sinks-beyond-kv": (1, 2, 2, 37, 37, 16, 1, 0, 100, False),  # every key is an end sink: dense
    "end-sinks-overlap-sinks": (1, 2, 1, 20, 20, 16, 1, 12, 12, False),
    "fewer-queries": (1, 4, 2, 33, 100, 32, (7, 2), 2, 5, False),
    "more-queries-causal": (1, 2, 1, 60, 35, 16, 3, 1, 4, True),  # the first 25 queries see nothing
    "softcap-asymmetric": (1, 2, 2, 45, 45, 16, (5, 0), 1, 2, False),
}


@pytest.mark.parametrize("case", list(END_SINK_CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, pytest.param(torch.bfloat16, marks=gpu_only)])
def test_end_sinks_forward_and_gradients(case, dtype):
    batch, heads, kv_heads, q_len, kv_len, head_dim, window, sinks, end_sinks, causal = END_SINK_CASES[case]
    q, k, v, grad_out = random_qkv(batch, heads, kv_heads, q_len, kv_len, head_dim, dtype, seed=11)
    softcap = 2.0 if case.startswith("softcap") else 0.0
    check_against_reference(q, k, v, grad_out, window, sinks, causal, softcap=softcap, end_sinks=end_sinks)


def test_end_sinks_change_the_result_only_where_they_are_seen():
    q, k, v, _ = random_qkv(1, 2, 2, 40, 40, 16, torch.float32, seed=12)
    without = sliding_window_attention(q, k, v, window=2, causal=True)
    with_end = sliding_window_attention(q, k, v, window=2, causal=True, end_sinks=1)
    # Causal: only the last query is at or after the last key, and it sees that key in its band already.
    torch.testing.assert_close(with_end, without, rtol=0, atol=0)
    far = sliding_window_attention(q, k, v, window=2, causal=False, end_sinks=1)
    assert not torch.allclose(far[:, :, :30], sliding_window_attention(q, k, v, window=2, causal=False)[:, :, :30])


@pytest.mark.parametrize("case", ["more-queries-empty-rows", "fewer-queries-non-causal"])
def test_log_sum_exp_is_differentiable(case):
    batch, heads, kv_heads, q_len, kv_len, head_dim, window, sinks, causal = CASES[case]
    q, k, v, grad_out = random_qkv(batch, heads, kv_heads, q_len, kv_len, head_dim, torch.float32, seed=3)
    grad_lse = torch.randn(q.shape[:3], generator=torch.Generator().manual_seed(4)).to(DEVICE)
    check_against_reference(q, k, v, grad_out, window, sinks, causal, grad_lse=grad_lse)


def test_gradients_through_the_log_sum_exp_alone():
    q, k, v, _ = random_qkv(1, 2, 1, 37, 37, 16, torch.float32, seed=5)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    _, lse = sliding_window_attention(q, k, v, window=4, sinks=1, return_lse=True)
    grads = torch.autograd.grad(lse.sum(), (q, k, v))
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    _, lse64 = sliding_window_attention_reference(q64, k64, v64, window=4, sinks=1, return_lse=True)
    dq64, dk64, dv64 = torch.autograd.grad(lse64.sum(), (q64, k64, v64), allow_unused=True)
    assert dv64 is None and torch.equal(grads[2], torch.zeros_like(v))  # the lse does not depend on v
    for grad, expected in zip(grads, (dq64, dk64)):
        torch.testing.assert_close(grad.double(), expected, **TOLERANCES[torch.float32])


def test_strided_inputs():
    # q, k: (B, S, H, D) storage seen as (B, H, S, D); v: a head dim with stride 2 (copied by the launcher).
    q, k, v, grad_out = random_qkv(1, 2, 2, 29, 29, 16, torch.float32, seed=2)
    q, k, grad_out = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, grad_out))
    v = torch.stack([v, torch.full_like(v, float("nan"))], dim=-1).flatten(-2)[..., ::2]
    assert not q.is_contiguous() and not k.is_contiguous() and v.stride(-1) == 2
    check_against_reference(q, k, v, grad_out, window=4, sinks=1, causal=True)


def test_sum_backward_with_an_expanded_gradient():
    q, k, v, _ = random_qkv(1, 2, 2, 21, 21, 16, torch.float32, seed=6)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    sliding_window_attention(q, k, v, window=3, sinks=1).sum().backward()  # dO is a stride-0 expanded tensor
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    sliding_window_attention_reference(q64, k64, v64, window=3, sinks=1).sum().backward()
    for tensor, expected in ((q, q64), (k, k64), (v, v64)):
        torch.testing.assert_close(tensor.grad.double(), expected.grad, **TOLERANCES[torch.float32])


def test_explicit_scale():
    q, k, v, grad_out = random_qkv(1, 2, 2, 21, 21, 16, torch.float32)
    out, lse = sliding_window_attention(q, k, v, 3, 1, scale=0.3, return_lse=True)
    expected, expected_lse = sliding_window_attention_reference(q, k, v, 3, 1, scale=0.3, return_lse=True)
    torch.testing.assert_close(out, expected, **TOLERANCES[torch.float32])
    torch.testing.assert_close(lse, expected_lse, **LSE_TOLERANCE)


def test_window_beyond_int32_is_the_full_band():
    q, k, v, _ = random_qkv(1, 1, 1, 30, 30, 16, torch.float32, seed=7)
    torch.testing.assert_close(
        sliding_window_attention(q, k, v, window=2**40, sinks=2**40, causal=False),
        sliding_window_attention(q, k, v, window=30, sinks=0, causal=False),
    )


def test_empty_sequences():
    q, k, v, _ = random_qkv(1, 2, 2, 5, 0, 16, torch.float32)  # no keys: every query sees nothing
    q.requires_grad_()
    out, lse = sliding_window_attention(q, k, v, window=3, return_lse=True)
    assert torch.equal(out, torch.zeros_like(out)) and bool((lse == float("-inf")).all())
    out.sum().backward()
    assert torch.equal(q.grad, torch.zeros_like(q))
    q, k, v, _ = random_qkv(1, 2, 2, 0, 7, 16, torch.float32)  # no queries
    k.requires_grad_()
    out = sliding_window_attention(q, k, v, window=3)
    assert out.shape == (1, 2, 0, 16)
    out.sum().backward()
    assert torch.equal(k.grad, torch.zeros_like(k))


# The kernels must skip the tiles nobody in a block can see. Poison exactly those with NaN: a
# visited NaN key or query spreads NaN through the tile's matmuls even where the mask zeroes P.
# The poisoned ranges are skipped at every tiling from 16 to 128, so this holds for any autotuned config.


@pytest.mark.parametrize("window, causal", [(8, True), (8, False), ((40, 2), False)])
def test_forward_and_dq_never_load_key_tiles_outside_the_band_and_sinks(window, causal):
    # 16 queries at positions 584..599, window 8 (or 40 back): 4 sinks: keys 128..511 lie in no visited tile.
    q, k, v, grad_out = random_qkv(1, 2, 1, 16, 600, 16, torch.float32, seed=8)
    expected = float64_reference(q, k, v, grad_out, window, 4, causal)
    k_poisoned, v_poisoned = k.clone(), v.clone()
    k_poisoned[:, :, 128:512] = float("nan")
    v_poisoned[:, :, 128:512] = float("nan")
    _, _, (_, dk, dv) = check_against_reference(
        q, k_poisoned, v_poisoned, grad_out, window, 4, causal, expected=expected
    )
    assert bool((dk[:, :, 128:512] == 0).all() and (dv[:, :, 128:512] == 0).all())


def test_forward_and_dq_never_load_key_tiles_between_the_band_and_the_end_sinks():
    # 600 keys, window 8, one sink and 2 end sinks, non-causal: the first 64 queries see keys 0..71 and
    # 598..599. Keys 256..511 lie in no tile they visit at any tiling up to 128, so poisoning them with NaN
    # must leave those queries' outputs and dq right (the later queries see the NaN, as they should).
    q, k, v, grad_out = random_qkv(1, 2, 1, 600, 600, 16, torch.float32, seed=13)
    grad_out[:, :, 64:] = 0.0
    expected_out, _, (expected_dq, _, _) = float64_reference(q, k, v, grad_out, 8, 1, False, end_sinks=2)
    k_poisoned, v_poisoned = k.clone(), v.clone()
    k_poisoned[:, :, 256:512] = float("nan")
    v_poisoned[:, :, 256:512] = float("nan")
    q = q.clone().requires_grad_()
    out = sliding_window_attention(q, k_poisoned, v_poisoned, 8, 1, False, end_sinks=2)
    (dq,) = torch.autograd.grad(out[:, :, :64], q, grad_out[:, :, :64])
    tol = TOLERANCES[torch.float32]
    torch.testing.assert_close(out[:, :, :64].double(), expected_out[:, :, :64], **tol)
    torch.testing.assert_close(dq[:, :, :64].double(), expected_dq[:, :, :64], **tol)


@pytest.mark.parametrize("causal", [True, False])
def test_dkdv_never_loads_query_tiles_that_do_not_see_the_key_block(causal):
    # 600 queries over 16 keys: positions -584..15, so only queries from 576 on see a key.
    q, k, v, grad_out = random_qkv(1, 2, 1, 600, 16, 16, torch.float32, seed=9)
    expected = float64_reference(q, k, v, grad_out, 8, 0, causal)
    q_poisoned, grad_poisoned = q.clone(), grad_out.clone()
    q_poisoned[:, :, :512] = float("nan")
    grad_poisoned[:, :, :512] = float("nan")
    out, lse, (dq, _, _) = check_against_reference(q_poisoned, k, v, grad_poisoned, 8, 0, causal, expected=expected)
    assert bool((out[:, :, :512] == 0).all() and (dq[:, :, :512] == 0).all() and (lse[:, :, :512] < 0).all())


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(q=torch.randn(2, 8, 16)), ValueError, "q: expected 4 dimensions"),
        (dict(v=[[1.0]]), TypeError, "v: expected a torch.Tensor"),
        (dict(k=torch.randn(1, 2, 9, 32), v=torch.randn(1, 2, 9, 32)), ValueError, "k: batch and head_dim"),
        (dict(k=torch.randn(2, 2, 9, 16), v=torch.randn(2, 2, 9, 16)), ValueError, "k: batch and head_dim"),
        (dict(v=torch.randn(1, 2, 8, 16)), ValueError, "v: expected the shape of k"),
        (dict(q=torch.randn(1, 3, 9, 16)), ValueError, "q: 3 heads is not a multiple of the 2 key/value heads"),
        (
            dict(q=torch.randn(1, 2, 9, 12), k=torch.randn(1, 2, 9, 12), v=torch.randn(1, 2, 9, 12)),
            ValueError,
            "q: head_dim must be a multiple of 8 from 8 to 256, got 12",
        ),
        (
            dict(q=torch.randn(1, 2, 9, 4), k=torch.randn(1, 2, 9, 4), v=torch.randn(1, 2, 9, 4)),
            ValueError,
            "q: head_dim must be a multiple of 8",
        ),
        (
            dict(q=torch.randn(1, 2, 9, 264), k=torch.randn(1, 2, 9, 264), v=torch.randn(1, 2, 9, 264)),
            ValueError,
            "q: head_dim must be a multiple of 8 from 8 to 256, got 264",
        ),
        (dict(k=torch.randn(1, 2, 9, 16).half()), TypeError, "k, v: expected dtype torch.float32"),
        (dict(q=torch.randint(0, 3, (1, 2, 9, 16))), TypeError, "q: expected float32, float16 or bfloat16"),
        (dict(q=torch.randn(1, 2, 9, 16).double()), TypeError, "q: expected float32, float16 or bfloat16"),
        (dict(window=-2), ValueError, "window: expected integers >= -1"),
        (dict(window=(3, -2)), ValueError, "window: expected integers >= -1"),
        (dict(window=(-5, 1)), ValueError, "window: expected integers >= -1"),
        (dict(window=(1, 2, 3)), ValueError, "window: expected an integer or a \\(left, right\\) pair"),
        (dict(window=2.5), TypeError, "window: expected an integer"),
        (dict(window=True), TypeError, "window: expected integers"),
        (dict(softcap=-1.0), ValueError, "softcap: expected a finite number >= 0"),
        (dict(softcap=math.nan), ValueError, "softcap: expected a finite number >= 0"),
        (dict(softcap="50"), TypeError, "softcap: expected a real number"),
        (dict(sinks=-2), ValueError, "sinks: expected an integer >= 0"),
        (dict(sinks="4"), TypeError, "sinks: expected an integer"),
        (dict(end_sinks=-1), ValueError, "end_sinks: expected an integer >= 0"),
        (dict(end_sinks=1.0), TypeError, "end_sinks: expected an integer"),
        (dict(end_sinks=True), TypeError, "end_sinks: expected an integer"),
        (dict(scale=0.0), ValueError, "scale: expected a positive"),
        (dict(scale=-1.0), ValueError, "scale: expected a positive"),
        (dict(scale=math.inf), ValueError, "scale: expected a positive finite"),
        (dict(scale="big"), TypeError, "scale: expected a real number"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, error, message):
    arguments = dict(
        q=torch.randn(1, 2, 9, 16),
        k=torch.randn(1, 2, 9, 16),
        v=torch.randn(1, 2, 9, 16),
        window=2,
        sinks=0,
        scale=None,
        softcap=0.0,
    )
    arguments.update(kwargs)
    arguments = {
        name: value.to(DEVICE) if isinstance(value, torch.Tensor) else value for name, value in arguments.items()
    }
    with pytest.raises(error, match=message):
        sliding_window_attention(**arguments)


@pytest.mark.gpu
def test_device_mismatch_is_rejected():
    with pytest.raises(ValueError, match="k, v: expected device"):
        sliding_window_attention(
            torch.randn(1, 1, 4, 16, device="cuda"), torch.randn(1, 1, 4, 16), torch.randn(1, 1, 4, 16), window=1
        )
