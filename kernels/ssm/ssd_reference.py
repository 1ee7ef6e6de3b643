"""Plain-PyTorch references for Mamba-2's state-space duality scan (semantics: kernels/ssm/ssd.py,
the meaning of mamba-ssm's ``mamba_chunk_scan_combined``).

Shapes: x and z ``(batch, L, heads, P)``, dt ``(batch, L, heads)``, A ``(heads,)``, B and C
``(batch, L, G, N)`` with ``heads % G == 0`` (head ``h`` reads group ``h // (heads // G)``), D
``(heads,)`` or ``(heads, P)``, dt_bias ``(heads,)``, initial_states ``(batch, heads, P, N)``.
With ``dt' = softplus(dt + dt_bias)`` (softplus only if ``dt_softplus``; torch's threshold, so
above 20 it passes through) the state ``h (batch, heads, P, N)`` runs, for each step t::

    h_t = exp(dt'_t A) h_{t-1} + dt'_t x_t B_t^T        y_t = h_t C_t + D x_t

and ``y *= silu(z)`` when z is given. Packed sequences (kernels/ssm/packed.py): with ``seq_idx`` ``(batch, L)``
or ``cu_seqlens`` the state is reset where a new sequence
starts, ``h_t = dt'_t x_t B_t^T`` when ``seq_idx[t] != seq_idx[t - 1]``, so that no state
crosses a boundary; initial states enter the first sequence and the final states are those
after the last step (of the last sequence). Both functions return ``y`` in x's dtype, or
``(y, final_states)`` with ``return_final_states``; both are differentiable by autograd,
final states included.

``ssd_recurrence_reference`` is the definition, one step at a time in float64; the final
states come back in float32 (float64 for float64 x), like the kernel's.

``ssd_chunked_reference`` is the chunked "minimal SSD" form, vectorized for GPU sizes, in
float32 (float64 for float64 x). The sequence is padded with identity steps (dt' = 0) to a
multiple of ``chunk_size`` T. Inside a chunk, with the segment sums ``S[t, s] = sum_{s < r <= t}
dt'_r A`` (a cumulative sum of a masked (T, T) matrix, not a difference of two cumulative sums,
so there is no cancellation), the output is a masked matmul ``y_diag = (C B^T * exp(S)) (dt' x)``;
each chunk's own contribution to the state after it is ``sum_s exp(S[T-1, s]) dt'_s x_s B_s^T``;
a recurrence over chunks carries the state across (decay ``exp(sum of dt' A)`` per chunk); and
the state entering a chunk reaches its outputs as ``y_off_t = exp(sum_{r <= t} dt'_r A) h C_t``.
With ``seq_idx`` each of these terms is kept only between steps of one sequence: the masked
matmul where ``seq_idx[t] == seq_idx[s]``, a step's share of the chunk's state where it is in
the chunk's last sequence, the carried state where the chunk holds no boundary, and ``y_off``
where step t is in the sequence that the entering state belongs to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from menagerie.kernels.ssm.packed import packed_sequence_ids


def _steps(dt, dt_bias, dt_softplus, compute):
    """dt' = softplus(dt + dt_bias) (each part when asked for), in the compute dtype."""
    dt = dt.to(compute)
    if dt_bias is not None:
        dt = dt + dt_bias.to(compute)
    return F.softplus(dt) if dt_softplus else dt  # threshold=20: passes dt through above 20


def _finish(y, x, D, z, dtype):
    """Adds the skip connection D x and the gate silu(z), then rounds to the output dtype."""
    if D is not None:
        D = D.to(y.dtype)
        y = y + x * (D[:, None] if D.dim() == 1 else D)
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(dtype)


def _state_dtype(x):
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def ssd_recurrence_reference(
    x,
    dt,
    A,
    B,
    C,
    D=None,
    z=None,
    dt_bias=None,
    dt_softplus=False,
    initial_states=None,
    return_final_states=False,
    seq_idx=None,
    cu_seqlens=None,
):
    """The definition: a Python loop over the steps, in float64."""
    seq_idx = packed_sequence_ids(x, seq_idx, cu_seqlens)
    compute = torch.float64
    batch, length, heads, head_dim = x.shape
    per_group = heads // B.shape[2]
    x_c = x.to(compute)
    dt = _steps(dt, dt_bias, dt_softplus, compute)
    A = A.to(compute)
    B = B.to(compute).repeat_interleave(per_group, dim=2)  # (batch, L, heads, N)
    C = C.to(compute).repeat_interleave(per_group, dim=2)
    state = x_c.new_zeros(batch, heads, head_dim, B.shape[-1]) if initial_states is None else initial_states.to(compute)
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        if seq_idx is not None and t > 0:
            decay = decay * (seq_idx[:, t] == seq_idx[:, t - 1]).to(compute)[:, None, None, None]
        state = decay * state + (dt[:, t, :, None] * x_c[:, t])[..., None] * B[:, t, :, None, :]
        ys.append((state * C[:, t, :, None, :]).sum(-1))
    y = torch.stack(ys, dim=1) if ys else x_c.new_zeros(x.shape)
    y = _finish(y, x_c, D, z, x.dtype)
    return (y, state.to(_state_dtype(x))) if return_final_states else y


def _segment_sums(log_decay):
    """``out[..., t, s] = sum_{s < r <= t} log_decay[..., r]`` for s <= t, -inf above the diagonal."""
    steps = log_decay.shape[-1]
    causal = torch.ones(steps, steps, dtype=torch.bool, device=log_decay.device).tril()
    # Entry [r, s] of the masked matrix is log_decay[r] for r > s; its cumulative sum over r is the segment sum.
    segment = log_decay[..., :, None].expand(*log_decay.shape, steps).masked_fill(~causal.tril(-1), 0.0)
    return segment.cumsum(dim=-2).masked_fill(~causal, float("-inf"))


def ssd_chunked_reference(
    x,
    dt,
    A,
    B,
    C,
    chunk_size=64,
    D=None,
    z=None,
    dt_bias=None,
    dt_softplus=False,
    initial_states=None,
    return_final_states=False,
    seq_idx=None,
    cu_seqlens=None,
):
    """The chunked form (see the module docstring), in float32 (float64 for float64 x)."""
    seq_idx = packed_sequence_ids(x, seq_idx, cu_seqlens)
    compute = _state_dtype(x)
    batch, length, heads, head_dim = x.shape
    groups, n_state = B.shape[2], B.shape[3]
    per_group = heads // groups
    n_chunks = -(-length // chunk_size)
    pad = n_chunks * chunk_size - length
    x_c = x.to(compute)
    dt = _steps(dt, dt_bias, dt_softplus, compute)

    def chunked(tensor, *trailing):
        """Padded with zeros along L and split as (batch, chunk, step, *trailing)."""
        tensor = F.pad(tensor, (0, 0) * (tensor.dim() - 2) + (0, pad))
        return tensor.reshape(batch, n_chunks, chunk_size, *trailing)

    # Heads as (group, head within group); padded steps have dt' = 0: decay 1 and no input.
    xs = chunked(x_c, groups, per_group, head_dim)
    steps = chunked(dt, groups, per_group)
    Bs = chunked(B.to(compute), groups, n_state)
    Cs = chunked(C.to(compute), groups, n_state)
    log_decay = steps * A.to(compute).reshape(groups, per_group)  # (batch, chunk, T, G, R)
    weights = torch.exp(_segment_sums(log_decay.permute(0, 1, 3, 4, 2)))  # (batch, chunk, G, R, T, T)
    inputs = steps[..., None] * xs  # dt'_s x_s

    scores = torch.einsum("bctgn,bcsgn->bcgts", Cs, Bs)
    entering_reaches = torch.ones_like(steps[..., 0, 0])  # (batch, chunk, T): step t sees the entering state
    chunk_decays = torch.exp(log_decay.sum(dim=2))  # (batch, chunk, G, R)
    if seq_idx is not None:
        sequences = torch.cat([seq_idx, seq_idx[:, -1:].expand(batch, pad)], dim=1).reshape(batch, n_chunks, -1)
        same = sequences[..., :, None] == sequences[..., None, :]  # (batch, chunk, T, T)
        weights = weights * same[:, :, None, None].to(compute)
        # The entering state belongs to the sequence of the previous chunk's last step (the first
        # sequence for chunk 0); it is carried through a chunk only if that chunk holds no boundary.
        before = torch.cat([sequences[:, :1, 0], sequences[:, :-1, -1]], dim=1)  # (batch, chunk)
        entering_reaches = (sequences == before[..., None]).to(compute)
        chunk_decays = chunk_decays * entering_reaches[:, :, -1, None, None]
    y_diag = torch.einsum("bcgts,bcgrts,bcsgrp->bctgrp", scores, weights, inputs)
    # weights[..., T-1, s] = exp(sum_{s < r < T} dt'_r A): from step s to the chunk's end.
    chunk_states = torch.einsum("bcgrs,bcsgrp,bcsgn->bcgrpn", weights[..., -1, :], inputs, Bs)

    state = (
        x_c.new_zeros(batch, groups, per_group, head_dim, n_state)
        if initial_states is None
        else initial_states.to(compute).reshape(batch, groups, per_group, head_dim, n_state)
    )
    entering = []
    for chunk in range(n_chunks):
        entering.append(state)
        state = chunk_decays[:, chunk, ..., None, None] * state + chunk_states[:, chunk]
    if n_chunks:
        entering = torch.stack(entering, dim=1)  # (batch, chunk, G, R, P, N)
        reach = torch.exp(log_decay.cumsum(dim=2)) * entering_reaches[..., None, None]
        y_off = torch.einsum("bctgn,bcgrpn,bctgr->bctgrp", Cs, entering, reach)
        y = (y_diag + y_off).reshape(batch, n_chunks * chunk_size, heads, head_dim)[:, :length]
    else:
        y = x_c.new_zeros(x.shape)
    y = _finish(y, x_c, D, z, x.dtype)
    return (y, state.reshape(batch, heads, head_dim, n_state)) if return_final_states else y
