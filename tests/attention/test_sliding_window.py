import pytest
import torch

from kernels.attention import sliding_window_attention, sliding_window_attention_reference
from kernels.attention.sliding_window import visited_key_tiles

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Errors scale with the inputs' precision: fp32 is compared at ~100 ulps (accumulation
# over up to ~100 keys and D terms), fp16/bf16 at a few ulps of the dtype.
TOLERANCES = {torch.float32: dict(atol=2e-5, rtol=2e-5), torch.float16: dict(atol=4e-3, rtol=4e-3),
              torch.bfloat16: dict(atol=3e-2, rtol=3e-2)}

CASES = {
    # name: (batch, heads, kv_heads, q_len, kv_len, head_dim, window, sinks, causal)
    "single-token": (1, 2, 2, 1, 1, 16, 0, 0, True),
    "odd-length": (2, 2, 2, 37, 37, 16, 5, 1, True),
    "beyond-one-tile": (1, 2, 1, 97, 97, 64, 9, 4, True),
    "not-multiple-of-tile": (1, 1, 1, 130, 130, 16, 20, 4, False),
    "fewer-queries": (1, 4, 2, 33, 100, 32, 7, 4, True),
    "more-queries-empty-rows": (1, 2, 1, 50, 30, 16, 3, 1, True),
    "window-zero": (1, 2, 2, 40, 40, 16, 0, 0, True),
    "window-covers-all": (1, 2, 2, 40, 40, 16, 100, 0, True),
    "sinks-after-band": (1, 2, 2, 20, 20, 16, 1, 4, False),
    "gqa-one-kv-head": (1, 4, 1, 45, 45, 16, 6, 2, True),
    "head-dim-128": (1, 1, 1, 24, 24, 128, 4, 1, True),
}


def random_qkv(batch, heads, kv_heads, q_len, kv_len, head_dim, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=generator).to(DEVICE, dtype)  # noqa: E731
    return (make(batch, heads, q_len, head_dim), make(batch, kv_heads, kv_len, head_dim),
            make(batch, kv_heads, kv_len, head_dim), make(batch, heads, q_len, head_dim))


def check_against_reference(q, k, v, grad_out, window, sinks, causal):
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out, lse = sliding_window_attention(q, k, v, window, sinks, causal, return_lse=True)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad_out)

    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    expected, expected_lse = sliding_window_attention_reference(q64, k64, v64, window, sinks, causal, return_lse=True)
    expected_grads = torch.autograd.grad(expected, (q64, k64, v64), grad_out.double())

    tol = TOLERANCES[q.dtype]
    assert out.dtype == dq.dtype == dk.dtype == dv.dtype == q.dtype and lse.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, **tol)
    torch.testing.assert_close(lse.double(), expected_lse.double(), atol=1e-4, rtol=1e-5)  # -inf matches -inf
    for name, grad, expected_grad in zip(("dq", "dk", "dv"), (dq, dk, dv), expected_grads):
        torch.testing.assert_close(grad.double(), expected_grad, **tol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("case", list(CASES))
def test_fp32_forward_and_gradients(case):
    batch, heads, kv_heads, q_len, kv_len, head_dim, window, sinks, causal = CASES[case]
    q, k, v, grad_out = random_qkv(batch, heads, kv_heads, q_len, kv_len, head_dim, torch.float32)
    check_against_reference(q, k, v, grad_out, window, sinks, causal)


@pytest.mark.parametrize("case", ["odd-length", "fewer-queries", "more-queries-empty-rows", "gqa-one-kv-head"])
@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=pytest.mark.gpu)])
def test_half_precision_forward_and_gradients(case, dtype):
    batch, heads, kv_heads, q_len, kv_len, head_dim, window, sinks, causal = CASES[case]
    q, k, v, grad_out = random_qkv(batch, heads, kv_heads, q_len, kv_len, head_dim, dtype, seed=1)
    check_against_reference(q, k, v, grad_out, window, sinks, causal)


@pytest.mark.parametrize("sinks", [0, 1, 4])
def test_sink_counts(sinks):
    q, k, v, grad_out = random_qkv(1, 2, 2, 70, 70, 16, torch.float32, seed=sinks)
    check_against_reference(q, k, v, grad_out, window=8, sinks=sinks, causal=True)


def test_strided_inputs_from_a_sequence_major_layout():
    q, k, v, grad_out = (t.transpose(1, 2).contiguous().transpose(1, 2)  # (B, S, H, D) storage, (B, H, S, D) view
                         for t in random_qkv(1, 2, 2, 29, 29, 16, torch.float32, seed=2))
    assert not q.is_contiguous()
    check_against_reference(q, k, v, grad_out, window=4, sinks=1, causal=True)


def test_explicit_scale():
    q, k, v, _ = random_qkv(1, 2, 2, 21, 21, 16, torch.float32)
    torch.testing.assert_close(sliding_window_attention(q, k, v, 3, 1, scale=0.3),
                               sliding_window_attention_reference(q, k, v, 3, 1, scale=0.3), atol=2e-5, rtol=2e-5)


def test_forward_visits_only_the_band_and_sink_tiles():
    # S=1024, W=64, 4 sinks, 64x64 tiles: a query block needs at most one sink tile and the
    # two or three tiles its band spans, never the 16 tiles of the whole sequence.
    visited = visited_key_tiles(1024, 1024, window=64, sinks=4, causal=True, block_m=64, block_n=64)
    assert max(len(tiles) for tiles in visited) <= 1 + 64 // 64 + 2
    assert all(len(set(tiles)) == len(tiles) for tiles in visited)  # no tile twice
    assert all(tiles[0] == 0 for tiles in visited)  # the sink tile is always there
    dense = visited_key_tiles(1024, 1024, window=1024, sinks=0, causal=True, block_m=64, block_n=64)
    assert [len(tiles) for tiles in dense] == list(range(1, 17))  # the causal triangle


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(q=torch.randn(2, 8, 16)), ValueError, "q: expected 4 dimensions"),
    (dict(k=torch.randn(1, 2, 9, 32), v=torch.randn(1, 2, 9, 32)), ValueError, "k: batch and head_dim"),
    (dict(v=torch.randn(1, 2, 8, 16)), ValueError, "v: expected the shape of k"),
    (dict(q=torch.randn(1, 3, 9, 16)), ValueError, "not a multiple of the 2 key/value heads"),
    (dict(q=torch.randn(1, 2, 9, 24), k=torch.randn(1, 2, 9, 24), v=torch.randn(1, 2, 9, 24)), ValueError,
     "head_dim must be a power of two"),
    (dict(k=torch.randn(1, 2, 9, 16).half()), TypeError, "k, v: expected dtype"),
    (dict(q=torch.randint(0, 3, (1, 2, 9, 16))), TypeError, "q: expected float32"),
    (dict(window=-1), ValueError, "window: expected an integer >= 0"),
    (dict(window=2.5), ValueError, "window: expected an integer >= 0"),
    (dict(sinks=-2), ValueError, "sinks: expected an integer >= 0"),
    (dict(scale=0.0), ValueError, "scale: expected a positive number"),
])
def test_bad_inputs_raise_clear_errors(kwargs, error, message):
    arguments = dict(q=torch.randn(1, 2, 9, 16), k=torch.randn(1, 2, 9, 16), v=torch.randn(1, 2, 9, 16), window=2,
                     sinks=0, scale=None)
    arguments.update(kwargs)
    arguments = {name: value.to(DEVICE) if isinstance(value, torch.Tensor) else value
                 for name, value in arguments.items()}
    with pytest.raises(error, match=message):
        sliding_window_attention(**arguments)


@pytest.mark.gpu
def test_device_mismatch_is_rejected():
    with pytest.raises(ValueError, match="k, v: expected device"):
        sliding_window_attention(torch.randn(1, 1, 4, 16, device="cuda"), torch.randn(1, 1, 4, 16),
                                 torch.randn(1, 1, 4, 16), window=1)
