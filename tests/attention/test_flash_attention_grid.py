"""The meaning of FlashAttention's test grids, rebuilt as products of small factor lists.

FlashAttention's ``test_flash_attn_output`` and ``test_flash_attn_varlen_output`` sweep local
windows (``window_size`` pairs, -1 unbounded on either side), causal masking, seqlen_q below and
above seqlen_k, MHA/GQA/MQA, softcapping, head dims and packed batches. Each test here takes one
slice of that space as a full product, at tiny sizes (CPU interpreter), and compares the kernel's
output, log-sum-exp and gradients with the float64 reference. Lengths are odd and not multiples
of any tile; sinks are 0 except where a factor says otherwise (FlashAttention has none).
"""

import pytest
import torch

from tests.attention.test_sliding_window import check_against_reference, random_qkv
from tests.attention.test_varlen import check_varlen, packed_inputs

WINDOWS = [(-1, -1), (-1, 7), (7, -1), (0, 0), (5, 11), (11, 5)]
LENGTHS = {"q<k": (13, 29), "q>k": (29, 13), "q=k": (21, 21)}  # FlashAttention pairs both (113, 203) and (203, 113)
HEADS = {"mha": (4, 4), "gqa": (4, 2), "mqa": (4, 1)}


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lengths", list(LENGTHS))
@pytest.mark.parametrize("window", WINDOWS, ids=str)
def test_windows_causal_and_lengths(window, lengths, causal):
    q_len, kv_len = LENGTHS[lengths]
    q, k, v, grad_out = random_qkv(1, 2, 2, q_len, kv_len, 16, torch.float32, seed=q_len + kv_len)
    check_against_reference(q, k, v, grad_out, window, 0, causal)


@pytest.mark.parametrize("softcap", [0.0, 4.0])
@pytest.mark.parametrize("lengths", list(LENGTHS))
@pytest.mark.parametrize("heads", list(HEADS))
def test_head_ratios_softcap_and_lengths(heads, lengths, softcap):
    q_len, kv_len = LENGTHS[lengths]
    q, k, v, grad_out = random_qkv(1, *HEADS[heads], q_len, kv_len, 16, torch.float32, seed=3)
    # Scaled up so that the cap bends the scores (|s| / softcap around 1).
    check_against_reference(2 * q, 2 * k, v, grad_out, (9, -1), 1, False, softcap=softcap)


@pytest.mark.parametrize("head_dim", [24, 32, 64, 128, 192, 224])  # multiples of 8 the other head-dim tests skip
def test_head_dims(head_dim):
    q, k, v, grad_out = random_qkv(1, 3, 1, 13, 21, head_dim, torch.float32, seed=head_dim)
    check_against_reference(q, k, v, grad_out, (5, -1), 0, True)


# Packed batches with an empty sequence, a one-token one and keys shorter or longer than queries.
VARLEN_Q, VARLEN_K = [0, 1, 17, 5, 9], [3, 1, 17, 0, 22]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("heads", list(HEADS))
@pytest.mark.parametrize("window", [(-1, -1), (4, -1), (-1, 2)], ids=str)
def test_varlen_windows_and_head_ratios(window, heads, causal):
    heads, kv_heads = HEADS[heads]
    q, k, v, grad_out, grad_lse = packed_inputs(VARLEN_Q, VARLEN_K, heads, kv_heads, 16, torch.float32, seed=1)
    check_varlen(VARLEN_Q, VARLEN_K, q, k, v, grad_out, grad_lse, window, 0, causal, 0.0)
