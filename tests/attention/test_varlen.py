"""Packed sequences (``sliding_window_attention_varlen``) against the dense float64 reference run per sequence."""

import itertools

import pytest
import torch

from menagerie.kernels.attention import sliding_window_attention_varlen, sliding_window_attention_varlen_reference
from tests.attention.test_sliding_window import DEVICE, LSE_TOLERANCE, TOLERANCES, gpu_only

CASES = {
    # name: (query lengths, key lengths, heads, kv_heads, head_dim, window, sinks, causal, softcap)
    "length-one-and-empty": ([1, 40, 0, 17], [1, 40, 0, 17], 4, 2, 32, 5, 2, True, 0.0),
    "longer-than-a-tile": ([70, 3, 45], [70, 3, 45], 2, 1, 16, (3, 9), 1, False, 0.0),
    "queries-and-keys-differ": ([5, 70, 1], [70, 5, 3], 2, 2, 16, (-1, 8), 3, False, 0.0),
    # 24 queries of sequence 0 see nothing: output 0, lse -inf (compared with the reference's, -inf included).
    "empty-windows": ([30, 4], [6, 20], 2, 1, 16, (1, 0), 0, True, 0.0),
    "sinks-beyond-a-sequence": ([3, 20, 7], [3, 20, 7], 2, 2, 16, 2, 10, True, 0.0),
    "sinks-beyond-non-causal": ([3, 20, 7], [3, 20, 7], 2, 1, 16, (2, 1), 10, False, 0.0),
    "mqa-softcap-head-dim-40": ([17, 33], [17, 33], 4, 1, 40, (8, -1), 1, False, 1.0),
}


def offsets(lengths):
    return torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32, device=DEVICE)


def packed_inputs(q_lens, k_lens, heads, kv_heads, head_dim, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=generator).to(DEVICE, dtype)  # noqa: E731
    return (
        make(sum(q_lens), heads, head_dim),
        make(sum(k_lens), kv_heads, head_dim),
        make(sum(k_lens), kv_heads, head_dim),
        make(sum(q_lens), heads, head_dim),
        torch.randn(heads, sum(q_lens), generator=generator).to(DEVICE),
    )


def check_varlen(q_lens, k_lens, q, k, v, grad_out, grad_lse, window, sinks, causal, softcap, end_sinks=0):
    cu_q, cu_k = offsets(q_lens), offsets(k_lens)
    max_q, max_k = max(q_lens), max(k_lens)
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out, lse = sliding_window_attention_varlen(
        q, k, v, cu_q, cu_k, max_q, max_k, window, sinks, causal, softcap=softcap, return_lse=True, end_sinks=end_sinks
    )
    grads = torch.autograd.grad((out, lse), (q, k, v), (grad_out, grad_lse))
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    out64, lse64 = sliding_window_attention_varlen_reference(
        q64,
        k64,
        v64,
        cu_q,
        cu_k,
        max_q,
        max_k,
        window,
        sinks,
        causal,
        softcap=softcap,
        return_lse=True,
        end_sinks=end_sinks,
    )
    grads64 = torch.autograd.grad((out64, lse64), (q64, k64, v64), (grad_out.double(), grad_lse.double()))
    tol = TOLERANCES[q.dtype]
    assert out.shape == q.shape and out.dtype == q.dtype and lse.shape == (q.shape[1], q.shape[0])
    torch.testing.assert_close(out.double(), out64, **tol)
    torch.testing.assert_close(lse.double(), lse64, **LSE_TOLERANCE)  # -inf where a query sees nothing
    for name, grad, expected in zip(("dq", "dk", "dv"), grads, grads64):
        torch.testing.assert_close(grad.double(), expected, **tol, msg=lambda m, name=name: f"{name}: {m}")
    return out, lse, grads


@pytest.mark.parametrize("case", list(CASES))
def test_fp32_forward_and_gradients(case):
    q_lens, k_lens, heads, kv_heads, head_dim, window, sinks, causal, softcap = CASES[case]
    q, k, v, grad_out, grad_lse = packed_inputs(q_lens, k_lens, heads, kv_heads, head_dim, torch.float32)
    check_varlen(q_lens, k_lens, q, k, v, grad_out, grad_lse, window, sinks, causal, softcap)


@pytest.mark.parametrize("case", ["length-one-and-empty", "queries-and-keys-differ", "mqa-softcap-head-dim-40"])
@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=gpu_only)])
def test_half_precision_forward_and_gradients(case, dtype):
    q_lens, k_lens, heads, kv_heads, head_dim, window, sinks, causal, softcap = CASES[case]
    q, k, v, grad_out, grad_lse = packed_inputs(q_lens, k_lens, heads, kv_heads, head_dim, dtype, seed=1)
    check_varlen(q_lens, k_lens, q, k, v, grad_out, grad_lse, window, sinks, causal, softcap)


# End sinks are each sequence's own last keys: a padded BERT batch's trailing [SEP] through varlen.
END_SINK_CASES = {
    # name: (query lengths, key lengths, heads, kv_heads, head_dim, window, sinks, end_sinks, causal)
    "cls-and-sep-per-sequence": ([70, 3, 0, 45], [70, 3, 0, 45], 2, 2, 16, 3, 1, 1, False),
    "causal-end-sinks": ([40, 17], [40, 17], 2, 1, 16, 2, 0, 4, True),
    "queries-and-keys-differ": ([5, 50], [50, 5], 4, 2, 32, (4, 1), 1, 3, False),
    "end-sinks-beyond-a-sequence": ([3, 20, 7], [3, 20, 7], 2, 2, 16, 1, 0, 10, False),
}


@pytest.mark.parametrize("case", list(END_SINK_CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, pytest.param(torch.bfloat16, marks=gpu_only)])
def test_end_sinks_per_sequence(case, dtype):
    q_lens, k_lens, heads, kv_heads, head_dim, window, sinks, end_sinks, causal = END_SINK_CASES[case]
    q, k, v, grad_out, grad_lse = packed_inputs(q_lens, k_lens, heads, kv_heads, head_dim, dtype, seed=5)
    check_varlen(q_lens, k_lens, q, k, v, grad_out, grad_lse, window, sinks, causal, 0.0, end_sinks)


def test_no_sequence_reads_another():
    # Sequence 1 is all NaN. Tiles of sequences 0 and 2 that straddled it would spread the NaN (0 * NaN)
    # into their outputs and gradients: they must stay finite and right.
    q_lens = k_lens = [37, 21, 40]
    q, k, v, grad_out, grad_lse = packed_inputs(q_lens, k_lens, 2, 1, 16, torch.float32, seed=3)
    expected = check_varlen(q_lens, k_lens, q, k, v, grad_out, grad_lse, (9, 4), 2, False, 0.0)
    for tensor in (q, k, v, grad_out):
        tensor[37:58] = float("nan")
    grad_lse[:, 37:58] = float("nan")
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out, lse = sliding_window_attention_varlen(
        q, k, v, offsets(q_lens), offsets(k_lens), 40, 40, (9, 4), 2, causal=False, return_lse=True
    )
    grads = torch.autograd.grad((out, lse), (q, k, v), (grad_out, grad_lse))
    keep = torch.cat([torch.arange(37), torch.arange(58, 98)])
    torch.testing.assert_close(out[keep], expected[0][keep])
    torch.testing.assert_close(lse[:, keep], expected[1][:, keep])
    for grad, expected_grad in zip(grads, expected[2]):
        torch.testing.assert_close(grad[keep], expected_grad[keep])


def test_sum_backward_with_an_expanded_gradient():
    q_lens = [9, 1, 30]
    q, k, v, _, _ = packed_inputs(q_lens, q_lens, 2, 2, 16, torch.float32, seed=4)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    cu = offsets(q_lens)
    sliding_window_attention_varlen(q, k, v, cu, cu, 30, 30, 3, 1).sum().backward()  # dO: stride-0 expanded
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    sliding_window_attention_varlen_reference(q64, k64, v64, cu, cu, 30, 30, 3, 1).sum().backward()
    for tensor, expected in ((q, q64), (k, k64), (v, v64)):
        torch.testing.assert_close(tensor.grad.double(), expected.grad, **TOLERANCES[torch.float32])


def _arguments(**changes):
    arguments = dict(
        q=torch.randn(12, 2, 16),
        k=torch.randn(12, 2, 16),
        v=torch.randn(12, 2, 16),
        cu_seqlens_q=torch.tensor([0, 5, 12], dtype=torch.int32),
        cu_seqlens_k=torch.tensor([0, 5, 12], dtype=torch.int32),
        max_seqlen_q=7,
        max_seqlen_k=7,
        window=2,
    )
    arguments.update(changes)
    return {name: value.to(DEVICE) if isinstance(value, torch.Tensor) else value for name, value in arguments.items()}


@pytest.mark.parametrize(
    "changes, error, message",
    [
        (
            dict(cu_seqlens_q=torch.tensor([0, 5, 12])),
            TypeError,
            "cu_seqlens_q: expected dtype torch.int32, got torch.int64",
        ),
        (dict(cu_seqlens_k=torch.tensor([0.0, 5.0, 12.0])), TypeError, "cu_seqlens_k: expected dtype torch.int32"),
        (
            dict(cu_seqlens_q=torch.tensor([0, 13, 12], dtype=torch.int32)),
            ValueError,
            "cu_seqlens_q: offsets must not decrease",
        ),
        (
            dict(
                cu_seqlens_q=torch.tensor([0, 8, 5, 12], dtype=torch.int32),
                cu_seqlens_k=torch.tensor([0, 5, 6, 12], dtype=torch.int32),
            ),
            ValueError,
            "cu_seqlens_q: offsets must not decrease",
        ),
        (
            dict(cu_seqlens_k=torch.tensor([0, 5, 11], dtype=torch.int32)),
            ValueError,
            "cu_seqlens_k: expected offsets from 0 to the packed length 12",
        ),
        (
            dict(cu_seqlens_k=torch.tensor([0, 12], dtype=torch.int32)),
            ValueError,
            "cu_seqlens_k: expected 3 offsets like cu_seqlens_q",
        ),
        (
            dict(cu_seqlens_q=torch.tensor([[0, 5, 12]], dtype=torch.int32)),
            ValueError,
            "cu_seqlens_q: expected a 1-D tensor",
        ),
        (dict(cu_seqlens_q=[0, 5, 12]), TypeError, "cu_seqlens_q: expected a torch.Tensor"),
        (dict(max_seqlen_q=6), ValueError, "max_seqlen_q: 6 is shorter than the longest sequence"),
        (dict(max_seqlen_k=-1), ValueError, "max_seqlen_k: expected an integer >= 0"),
        (dict(max_seqlen_k=7.0), TypeError, "max_seqlen_k: expected an integer"),
        (
            dict(q=torch.randn(12, 2, 12), k=torch.randn(12, 2, 12), v=torch.randn(12, 2, 12)),
            ValueError,
            "q: head_dim must be a multiple of 8 from 8 to 256, got 12",
        ),
        (dict(q=torch.randn(1, 12, 2, 16)), ValueError, "q: expected 3 dimensions"),
        (dict(k=torch.randn(12, 2, 32), v=torch.randn(12, 2, 32)), ValueError, "k: head_dim must match q's 16"),
        (dict(q=torch.randn(12, 3, 16)), ValueError, "q: 3 heads is not a multiple of the 2 key/value heads"),
        (dict(window=(-2, 0)), ValueError, "window: expected integers >= -1"),
        (dict(sinks=-1), ValueError, "sinks: expected an integer >= 0"),
        (dict(end_sinks=-3), ValueError, "end_sinks: expected an integer >= 0"),
        (dict(end_sinks="1"), TypeError, "end_sinks: expected an integer"),
        (dict(softcap=-0.5), ValueError, "softcap: expected a finite number >= 0"),
    ],
)
def test_bad_inputs_raise_clear_errors(changes, error, message):
    with pytest.raises(error, match=message):
        sliding_window_attention_varlen(**_arguments(**changes))
