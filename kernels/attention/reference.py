"""Plain-PyTorch sliding-window attention with sinks: dense scores under the shared mask.

Computes in float64 for float64 inputs and in float32 otherwise, and returns the
output in q's dtype; the log-sum-exp (natural log, ``(B, H, Sq)``) comes in the
compute dtype. With ``softcap > 0`` each scaled score ``s`` becomes
``softcap * tanh(s / softcap)`` before the mask and the softmax (the log-sum-exp is
of the capped scores). Queries that see no key output 0 and have log-sum-exp -inf
(and zero gradients). GQA repeats each key/value head over its group of query heads.
Differentiable by autograd. ``end_sinks`` (the last keys, visible to every query; with
causal, from their own position on) as in the kernel. ``query_chunk`` bounds memory to ``chunk x Sk`` scores
per head, so the reference also runs at long sequence lengths on a GPU.

``sliding_window_attention_varlen_reference`` runs the dense reference once per packed
sequence.
"""

from __future__ import annotations

import math

import torch

from menagerie.kernels.attention.mask import sliding_window_mask


def sliding_window_attention_reference(
    q,
    k,
    v,
    window,
    sinks=0,
    causal=True,
    scale=None,
    return_lse=False,
    query_chunk: int | None = None,
    softcap=0.0,
    end_sinks=0,
):
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    group = q.shape[1] // k.shape[1]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    keys = k.to(compute).repeat_interleave(group, dim=1)
    values = v.to(compute).repeat_interleave(group, dim=1)
    q_len, kv_len = q.shape[2], k.shape[2]
    mask = sliding_window_mask(q_len, kv_len, window, sinks, causal, device=q.device, end_sinks=end_sinks)
    outputs, lses = [], []
    chunk = query_chunk or max(q_len, 1)
    for start in range(0, q_len, chunk):
        hidden = ~mask[start : start + chunk]
        scores = (q[:, :, start : start + chunk].to(compute) @ keys.transpose(-1, -2)) * scale
        if softcap:
            scores = softcap * torch.tanh(scores / softcap)
        scores = scores.masked_fill(hidden, float("-inf"))
        lse = torch.logsumexp(scores, dim=-1)
        # exp(-inf - -inf) is NaN for queries that see nothing: their weights are 0 instead.
        weights = torch.exp(scores - lse.unsqueeze(-1).nan_to_num(neginf=0.0)).masked_fill(hidden, 0.0)
        outputs.append(weights @ values)
        lses.append(lse)
    out = torch.cat(outputs, dim=2).to(q.dtype) if outputs else q.new_zeros(q.shape)
    if not return_lse:
        return out
    return out, (torch.cat(lses, dim=2) if lses else q.new_zeros(q.shape[:3], dtype=compute))


def sliding_window_attention_varlen_reference(
    q,
    k,
    v,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    max_seqlen_k,
    window,
    sinks=0,
    causal=True,
    softcap=0.0,
    scale=None,
    return_lse=False,
    query_chunk: int | None = None,
    end_sinks=0,
):
    """Packed q ``(total_q, H, D)``, k, v ``(total_k, Hkv, D)``: the dense reference per sequence
    ``b`` on rows ``cu_seqlens[b]:cu_seqlens[b + 1]``. Returns ``(total_q, H, D)`` and, with
    ``return_lse``, the log-sum-exp ``(H, total_q)``. The max lengths are accepted for the
    kernel's signature; the reference does not need them. ``query_chunk`` as for the dense one."""
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    outputs, lses = [], []
    bounds_q, bounds_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    for (q0, q1), (k0, k1) in zip(zip(bounds_q, bounds_q[1:]), zip(bounds_k, bounds_k[1:])):
        out, lse = sliding_window_attention_reference(
            q[q0:q1].transpose(0, 1)[None],
            k[k0:k1].transpose(0, 1)[None],
            v[k0:k1].transpose(0, 1)[None],
            window,
            sinks,
            causal,
            scale,
            return_lse=True,
            query_chunk=query_chunk,
            softcap=softcap,
            end_sinks=end_sinks,
        )
        outputs.append(out[0].transpose(0, 1))
        lses.append(lse[0])
    out = torch.cat(outputs) if outputs else q.new_zeros(q.shape)
    lse = torch.cat(lses, dim=1) if lses else q.new_zeros((q.shape[1], q.shape[0]), dtype=compute)
    return (out, lse) if return_lse else out
