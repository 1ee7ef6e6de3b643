"""Plain-PyTorch references for Mamba's selective scan (the meaning of mamba-ssm's
``selective_scan_fn``; see kernels/ssm/selective_scan.py for the semantics).

``selective_scan_sequential`` is the definition, one step at a time; in float64 it
is what the tests compare against. ``selective_scan_reference`` is vectorized for
GPU sizes: chunks of ``CHUNK`` steps, inside which every state is a weighted sum of
the chunk's inputs with weights ``exp(sum of delta*A between them)`` (exponents
<= 0 when A < 0, so nothing overflows), a step from chunk to chunk carrying the
state, and activation checkpointing per chunk so the backward's memory stays
linear in the length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

CHUNK = 16


def _expand(matrix: torch.Tensor, batch: int, dim: int, compute: torch.dtype) -> torch.Tensor:
    """B or C in any layout as (batch, dim, N, L), or (dim, N) when shared."""
    matrix = matrix.to(compute)
    if matrix.dim() == 2:
        return matrix
    if matrix.dim() == 3:
        matrix = matrix.unsqueeze(1)
    return matrix.repeat_interleave(dim // matrix.shape[1], dim=1)


def _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    compute = torch.float64 if u.dtype == torch.float64 else torch.float32
    batch, dim, _ = u.shape
    delta = delta.to(compute)
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)  # threshold 20: passthrough above
    return (compute, u.to(compute), delta, A.to(compute), _expand(B, batch, dim, compute),
            _expand(C, batch, dim, compute))


def _finish(y, u, D, z, dtype):
    out = y if D is None else y + D.to(y.dtype)[:, None] * u
    if z is not None:
        out = out * F.silu(z.to(y.dtype))
    return out.to(dtype)


def _at(matrix: torch.Tensor, t) -> torch.Tensor:
    return matrix if matrix.dim() == 2 else matrix[..., t]


def selective_scan_sequential(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                              return_last_state=False):
    compute, u_c, delta, A, B, C = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    state = u_c.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        state = torch.exp(delta[..., t, None] * A) * state + (delta[..., t] * u_c[..., t])[..., None] * _at(B, t)
        ys.append((state * _at(C, t)).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u_c.clone()
    out = _finish(y, u_c, D, z, u.dtype)
    return (out, state.detach().float()) if return_last_state else out


def _chunk(state, u, delta, A, B, C):
    """One chunk: states (batch, dim, N, T) from the incoming state, and y (batch, dim, T)."""
    length = u.shape[-1]
    log_decay = torch.cumsum(delta[:, :, None, :] * A[None, :, :, None], dim=-1)  # (batch, dim, N, T)
    # weight[t, s] = exp(log_decay[t] - log_decay[s]) for s <= t: the decay from step s to step t.
    gap = log_decay[..., :, None] - log_decay[..., None, :]
    causal = torch.ones(length, length, dtype=torch.bool, device=u.device).tril()
    weight = torch.exp(gap.masked_fill(~causal, float("-inf")))
    inputs = (delta * u)[:, :, None, :] * (B if B.dim() == 4 else B[None, :, :, None])
    states = (weight @ inputs[..., None]).squeeze(-1) + torch.exp(log_decay) * state[..., None]
    y = (states * (C if C.dim() == 4 else C[None, :, :, None])).sum(2)
    return states[..., -1], y


def selective_scan_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                             return_last_state=False):
    compute, u_c, delta, A, B, C = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    state = u_c.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for start in range(0, u.shape[2], CHUNK):
        window = slice(start, start + CHUNK)
        pieces = (u_c[..., window], delta[..., window], A, B if B.dim() == 2 else B[..., window],
                  C if C.dim() == 2 else C[..., window])
        if torch.is_grad_enabled():
            state, y = checkpoint(_chunk, state, *pieces, use_reentrant=False)
        else:
            state, y = _chunk(state, *pieces)
        ys.append(y)
    y = torch.cat(ys, dim=-1) if ys else u_c.clone()
    out = _finish(y, u_c, D, z, u.dtype)
    return (out, state.detach().float()) if return_last_state else out
