"""Plain-PyTorch TopK sparse autoencoder: the definition the kernels are checked against,
and the two baselines people write (both benchmark rows).

Semantics (DESIGN.md): ``pre = (x - b_dec) @ W_enc + b_enc``; ``(values, indices) =
topk(relu(pre), k)`` sorted by value, descending, ties broken by the lower index;
``recon = sum_j values[:, j] * W_dec[indices[:, j]] + b_dec``.
"""

import torch
import torch.nn.functional as F


def topk_encode_reference(x, W_enc, b_enc, b_dec, k: int):
    """The definition: dense pre-activations, a stable sort so that ties go to the lower index."""
    acts = torch.relu((x - b_dec) @ W_enc + b_enc)
    values, indices = torch.sort(acts, dim=1, descending=True, stable=True)
    return values[:, :k], indices[:, :k]


def topk_encode_dense(x, W_enc, b_enc, b_dec, k: int):
    """The dense baseline as usually written: full matmul, ``torch.topk`` (tie order unspecified)."""
    return torch.topk(torch.relu((x - b_dec) @ W_enc + b_enc), k, dim=1)


def decode_dense(values, indices, W_dec, b_dec):
    """Scatters the activations into an ``(N, M)`` matrix (adding repeats) and multiplies it by ``W_dec``."""
    acts = values.new_zeros(values.shape[0], W_dec.shape[0]).scatter_add(1, indices, values)
    return acts @ W_dec + b_dec


def decode_embedding_bag(values, indices, W_dec, b_dec):
    """The common sparse baseline: a weighted sum of gathered rows with ``F.embedding_bag``."""
    return F.embedding_bag(indices, W_dec, per_sample_weights=values, mode="sum") + b_dec
