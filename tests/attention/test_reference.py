import math

import torch

from menagerie.kernels.attention import sliding_window_attention_reference, sliding_window_attention_varlen_reference


def naive(q, k, v, window, sinks, causal, softcap=0.0):
    """One query at a time, straight from the definition, in float64. ``window``: an int or a
    (left, right) pair, -1 unbounded."""
    batch, heads, q_len, dim = q.shape
    kv_len, group = k.shape[2], heads // k.shape[1]
    left, right = (window, window) if isinstance(window, int) else window
    out = torch.zeros_like(q)
    for b in range(batch):
        for h in range(heads):
            for i in range(q_len):
                pos = i + kv_len - q_len
                keys = [
                    j
                    for j in range(kv_len)
                    if ((left < 0 or j >= pos - left) and (right < 0 or j <= pos + right) or j < sinks)
                    and (not causal or j <= pos)
                ]
                if keys:
                    scores = torch.stack([q[b, h, i] @ k[b, h // group, j] for j in keys]) / math.sqrt(dim)
                    if softcap:
                        scores = softcap * torch.tanh(scores / softcap)
                    out[b, h, i] = torch.softmax(scores, 0) @ v[b, h // group, keys]
    return out


def test_reference_matches_the_definition():
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 9, 8, generator=generator, dtype=torch.float64)
    k = torch.randn(2, 2, 13, 8, generator=generator, dtype=torch.float64)
    v = torch.randn(2, 2, 13, 8, generator=generator, dtype=torch.float64)
    for window, sinks, causal in [
        (2, 0, True),
        (1, 3, True),
        (3, 2, False),
        (0, 0, True),
        ((1, 4), 1, False),
        ((-1, 2), 0, False),
        ((3, -1), 2, False),
        ((2, 5), 1, True),
        (-1, 0, False),
    ]:
        torch.testing.assert_close(
            sliding_window_attention_reference(q, k, v, window, sinks, causal), naive(q, k, v, window, sinks, causal)
        )
    torch.testing.assert_close(
        sliding_window_attention_reference(q, k, v, (2, 1), 1, False, softcap=0.5),
        naive(q, k, v, (2, 1), 1, False, softcap=0.5),
    )


def test_reference_gradients_match_the_definition():
    generator = torch.Generator().manual_seed(1)
    tensors = [
        torch.randn(1, 2, 7, 8, generator=generator, dtype=torch.float64, requires_grad=True),
        torch.randn(1, 1, 10, 8, generator=generator, dtype=torch.float64, requires_grad=True),
        torch.randn(1, 1, 10, 8, generator=generator, dtype=torch.float64, requires_grad=True),
    ]
    grad_out = torch.randn(1, 2, 7, 8, generator=generator, dtype=torch.float64)
    for window, sinks, causal, softcap in [(1, 2, True, 0.0), (2, 1, False, 0.0), ((1, 3), 1, False, 0.7)]:
        got = torch.autograd.grad(
            sliding_window_attention_reference(*tensors, window, sinks, causal, softcap=softcap), tensors, grad_out
        )
        expected = torch.autograd.grad(naive(*tensors, window, sinks, causal, softcap), tensors, grad_out)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b)


def test_empty_rows_give_zero_minus_infinity_and_zero_gradients():
    q, k, v = (
        torch.randn(1, 1, 6, 8, requires_grad=True),
        torch.randn(1, 1, 3, 8, requires_grad=True),
        torch.randn(1, 1, 3, 8, requires_grad=True),
    )
    out, lse = sliding_window_attention_reference(q, k, v, window=1, causal=True, return_lse=True)
    assert torch.equal(out[0, 0, :3], torch.zeros(3, 8))
    assert torch.isinf(lse[0, 0, :3]).all() and torch.isfinite(lse[0, 0, 3:]).all()
    (out.sum() + lse[torch.isfinite(lse)].sum()).backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    assert torch.equal(q.grad[0, 0, :3], torch.zeros(3, 8))


def test_dtypes_of_output_and_log_sum_exp():
    for dtype, lse_dtype in [
        (torch.float16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
    ]:
        q = torch.randn(1, 1, 5, 16).to(dtype)
        out, lse = sliding_window_attention_reference(q, q, q, window=2, return_lse=True)
        assert out.dtype == dtype and lse.dtype == lse_dtype and lse.shape == (1, 1, 5)


def test_query_chunks_do_not_change_the_result():
    q, k, v = torch.randn(1, 2, 37, 16), torch.randn(1, 2, 37, 16), torch.randn(1, 2, 37, 16)
    whole = sliding_window_attention_reference(q, k, v, window=4, sinks=2)
    torch.testing.assert_close(sliding_window_attention_reference(q, k, v, window=4, sinks=2, query_chunk=5), whole)


def test_varlen_reference_is_the_dense_reference_per_sequence():
    generator = torch.Generator().manual_seed(2)
    q_lens, k_lens = [3, 0, 7, 1], [5, 2, 4, 1]
    q = torch.randn(sum(q_lens), 4, 8, generator=generator, dtype=torch.float64)
    k = torch.randn(sum(k_lens), 2, 8, generator=generator, dtype=torch.float64)
    v = torch.randn(sum(k_lens), 2, 8, generator=generator, dtype=torch.float64)
    cu_q = torch.tensor([0, 3, 3, 10, 11], dtype=torch.int32)
    cu_k = torch.tensor([0, 5, 7, 11, 12], dtype=torch.int32)
    out, lse = sliding_window_attention_varlen_reference(
        q, k, v, cu_q, cu_k, 7, 5, (2, 1), 1, False, softcap=0.5, return_lse=True
    )
    assert out.shape == q.shape and lse.shape == (4, 11)
    for (q0, q1), (k0, k1) in zip([(0, 3), (3, 3), (3, 10), (10, 11)], [(0, 5), (5, 7), (7, 11), (11, 12)]):
        expected = naive(
            q[q0:q1].transpose(0, 1)[None],
            k[k0:k1].transpose(0, 1)[None],
            v[k0:k1].transpose(0, 1)[None],
            (2, 1),
            1,
            False,
            0.5,
        )
        torch.testing.assert_close(out[q0:q1], expected[0].transpose(0, 1))
