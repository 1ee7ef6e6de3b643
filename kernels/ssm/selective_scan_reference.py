"""Plain-PyTorch references for Mamba's selective scan (semantics: kernels/ssm/selective_scan.py,
the same as mamba-ssm's ``selective_scan_ref``).

Both take ``selective_scan``'s arguments and compute in float64 when u is float64, else in
float32; both are differentiable by autograd, and their last state is detached (in that
compute dtype).

``selective_scan_sequential`` is the definition, one step at a time: the tests run it in
float64 as the ground truth.

``selective_scan_reference`` is vectorized for GPU sizes. The sequence is cut into chunks of
T steps, walked in order carrying the state. Inside a chunk every state is a weighted sum

    x_t = sum_{s <= t} exp(S[t, s]) * delta_s B_s u_s + exp(S[t, start - 1]) * x_{start - 1}

with ``S[t, s] = sum_{s < r <= t} delta_r A`` computed as *segment sums* (a cumulative sum
of a masked (T, T) matrix, not a difference of two cumulative sums), so there is no
cancellation and, with A <= 0 and delta >= 0, every exponent is <= 0. Each chunk is
activation-checkpointed, so the backward's memory is one chunk's (T, T) weights plus a state
per chunk. T is the largest of 64, 32, 16, 8 whose (batch, dim, N, T, T) weights stay under
``WEIGHT_BUDGET`` elements (or ``chunk_size``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

WEIGHT_BUDGET = 1 << 27  # elements of one chunk's (batch, dim, N, T, T) weights: 512 MiB in float32


def _compute_dtype(u: torch.Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _per_channel(matrix: torch.Tensor, dim: int, compute: torch.dtype) -> torch.Tensor:
    """B or C as (dim, N) when shared, else (batch, dim, N, L): group g repeated dim // G times."""
    matrix = matrix.to(compute)
    if matrix.dim() == 2:
        return matrix
    if matrix.dim() == 3:
        matrix = matrix.unsqueeze(1)
    return matrix.repeat_interleave(dim // matrix.shape[1], dim=1)


def _prepare(u, delta, A, B, C, delta_bias, delta_softplus):
    compute = _compute_dtype(u)
    dim = u.shape[1]
    delta = delta.to(compute)
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)  # threshold=20: passes delta through above 20
    return u.to(compute), delta, A.to(compute), _per_channel(B, dim, compute), _per_channel(C, dim, compute)


def _finish(y, u, D, z, dtype):
    out = y if D is None else y + D.to(y.dtype)[:, None] * u
    if z is not None:
        out = out * F.silu(z.to(y.dtype))
    return out.to(dtype)


def _at(matrix: torch.Tensor, t) -> torch.Tensor:
    """B or C at step(s) t, broadcastable against (batch, dim, N[, T])."""
    return matrix[..., t] if matrix.dim() == 4 else (matrix if isinstance(t, int) else matrix[..., None])


def selective_scan_sequential(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False
):
    """The definition: a Python loop over the steps."""
    u_c, delta, A, B, C = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    state = u_c.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        state = torch.exp(delta[..., t, None] * A) * state + (delta[..., t] * u_c[..., t])[..., None] * _at(B, t)
        ys.append((state * _at(C, t)).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u_c.new_zeros(u.shape)
    out = _finish(y, u_c, D, z, u.dtype)
    return (out, state.detach()) if return_last_state else out


def _chunk(state, u, delta, A, B, C):
    """One chunk of T steps: (state after it, y (batch, dim, T)). B and C are per chunk or shared."""
    steps = u.shape[-1]
    log_decay = delta[:, :, None, :] * A[None, :, :, None]  # (batch, dim, N, T)
    causal = torch.ones(steps, steps, dtype=torch.bool, device=u.device).tril()
    # segment[..., t, s] = sum_{s < r <= t} log_decay[r] for s <= t (a cumulative sum over r of
    # log_decay[r] masked to r > s), and -inf above the diagonal.
    segment = log_decay[..., :, None].expand(*log_decay.shape, steps).masked_fill(~causal.tril(-1), 0.0)
    segment = segment.cumsum(dim=-2).masked_fill(~causal, float("-inf"))
    inputs = (delta * u)[:, :, None, :] * _at(B, slice(None))  # (batch, dim, N, T)
    states = (torch.exp(segment) * inputs[..., None, :]).sum(-1)
    states = states + torch.exp(log_decay.cumsum(-1)) * state[..., None]
    y = (states * _at(C, slice(None))).sum(2)
    return states[..., -1], y


def _chunk_size(batch, dim, n_states, requested):
    if requested is not None:
        return requested
    for size in (64, 32, 16):
        if batch * dim * n_states * size * size <= WEIGHT_BUDGET:
            return size
    return 8


def selective_scan_reference(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    return_last_state=False,
    *,
    chunk_size=None,
):
    """Chunked and vectorized (see the module docstring); ``chunk_size`` overrides T."""
    u_c, delta, A, B, C = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    batch, dim, length = u.shape
    size = _chunk_size(batch, dim, A.shape[1], chunk_size)
    state = u_c.new_zeros(batch, dim, A.shape[1])
    ys = []
    for start in range(0, length, size):
        window = slice(start, start + size)
        pieces = (
            u_c[..., window],
            delta[..., window],
            A,
            B if B.dim() == 2 else B[..., window],
            C if C.dim() == 2 else C[..., window],
        )
        if torch.is_grad_enabled():
            state, y = checkpoint(_chunk, state, *pieces, use_reentrant=False)
        else:
            state, y = _chunk(state, *pieces)
        ys.append(y)
    y = torch.cat(ys, dim=-1) if ys else u_c.new_zeros(u.shape)
    out = _finish(y, u_c, D, z, u.dtype)
    return (out, state.detach()) if return_last_state else out
