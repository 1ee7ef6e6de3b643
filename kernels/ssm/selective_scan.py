"""Mamba's selective scan in Triton, forward and backward.

The meaning of mamba-ssm's ``selective_scan_fn``: u, delta, z ``(batch, dim, L)``;
A ``(dim, N)`` real; B and C each shared ``(dim, N)``, per batch ``(batch, N, L)``
or grouped ``(batch, G, N, L)`` (channel ``d`` uses group ``d // (dim / G)``);
D and delta_bias ``(dim,)``. With ``delta <- softplus(delta + delta_bias)``
(softplus passes its input through above 20), the state ``x (batch, dim, N)``
starts at 0 and for each step

    x_t = exp(delta_t * A) * x_{t-1} + delta_t * B_t * u_t,    y_t = sum_n C_t[n] * x_t[n]

and ``out = (y + D*u) * silu(z)``. The state and all arithmetic are float32;
u, delta, z, B and C may be fp32, fp16 or bf16, A, D and delta_bias are float32.
``out`` has u's dtype; the last state ``(batch, dim, N)`` is float32 and carries
no gradient. Inputs are made contiguous along L where they are not.

Forward: one program per (batch, block of channels) walks the sequence once in
chunks of ``BLOCK_L`` steps with the state in registers; inside a chunk the
recurrence is an associative scan over ``(decay, input)`` pairs on a
``(BLOCK_D, N, BLOCK_L)`` tile. It saves only the state at each chunk boundary.
Backward: the same programs walk the chunks from the end, recompute each chunk's
states from its saved boundary (and, by a scan of the inputs shifted one step,
the previous states), run the adjoint recurrence ``h_t = C_t dy_t +
exp(delta_{t+1} A) h_{t+1}`` as a reverse scan, and accumulate every gradient.
Gradients of B and C are summed over channels with float32 atomics, so they are
not bitwise deterministic from run to run.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
BLOCK_D = 4 if INTERPRETING else 8
BLOCK_L = 16 if INTERPRETING else 32


@triton.jit
def _compose(decay_first, input_first, decay_then, input_then):
    return decay_first * decay_then, input_first * decay_then + input_then


@triton.jit
def _step_sizes(delta_ptr, bias, offsets, inside, SOFTPLUS: tl.constexpr):
    """delta + delta_bias, through softplus when asked; 0 outside, where it then means 'no step'."""
    raw = tl.load(delta_ptr + offsets, mask=inside, other=0.0).to(tl.float32) + bias[:, None]
    step = raw
    if SOFTPLUS:
        step = tl.where(raw > 20.0, raw, tl.log(1.0 + tl.exp(tl.minimum(raw, 20.0))))
    return tl.where(inside, step, 0.0), raw


@triton.jit
def _load_bc(ptr, batch, channels, steps, inside3, stride_b, stride_g, stride_n, stride_l, per_group,
             N: tl.constexpr):
    """B or C as a (BLOCK_D, N, BLOCK_L) tile, whatever its layout (expressed by the strides)."""
    states = tl.arange(0, N)
    offsets = (batch * stride_b + (channels // per_group)[:, None, None] * stride_g
               + states[None, :, None] * stride_n + steps[None, None, :] * stride_l)
    return tl.load(ptr + offsets, mask=inside3, other=0.0).to(tl.float32), offsets


@triton.jit
def _selective_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, boundary_ptr, last_ptr,
    dim, length, n_chunks,
    sB_b, sB_g, sB_n, sB_l, B_per_group, sC_b, sC_g, sC_n, sC_l, C_per_group,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
):
    batch = tl.program_id(0)
    channels = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    states = tl.arange(0, N)
    in_dim = channels < dim
    A = tl.load(A_ptr + channels[:, None] * N + states[None, :], mask=in_dim[:, None], other=0.0)
    skip = tl.load(D_ptr + channels, mask=in_dim, other=0.0) if HAS_D else tl.zeros((BLOCK_D,), tl.float32)
    bias = tl.load(bias_ptr + channels, mask=in_dim, other=0.0) if HAS_BIAS else tl.zeros((BLOCK_D,), tl.float32)
    rows = (batch * dim + channels) * length
    boundary_rows = ((batch * dim + channels) * n_chunks)[:, None] * N + states[None, :]
    state = tl.zeros((BLOCK_D, N), dtype=tl.float32)
    for chunk in range(0, n_chunks):
        tl.store(boundary_ptr + boundary_rows + chunk * N, state, mask=in_dim[:, None])
        steps = chunk * BLOCK_L + tl.arange(0, BLOCK_L)
        inside = in_dim[:, None] & (steps[None, :] < length)
        inside3 = inside[:, None, :]
        offsets = rows[:, None] + steps[None, :]
        u = tl.load(u_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
        step, _ = _step_sizes(delta_ptr, bias, offsets, inside, SOFTPLUS)
        B, _ = _load_bc(B_ptr, batch, channels, steps, inside3, sB_b, sB_g, sB_n, sB_l, B_per_group, N)
        C, _ = _load_bc(C_ptr, batch, channels, steps, inside3, sC_b, sC_g, sC_n, sC_l, C_per_group, N)
        decay = tl.exp(step[:, None, :] * A[:, :, None])  # exactly 1 where there is no step
        inputs = (step * u)[:, None, :] * B
        decay_prefix, input_prefix = tl.associative_scan((decay, inputs), axis=2, combine_fn=_compose)
        x = decay_prefix * state[:, :, None] + input_prefix
        out = tl.sum(x * C, axis=1) + skip[:, None] * u
        if HAS_Z:
            z = tl.load(z_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
            out = out * z * tl.sigmoid(z)
        tl.store(out_ptr + offsets, out.to(out_ptr.dtype.element_ty), mask=inside)
        decay_total, input_total = tl.reduce((decay, inputs), axis=2, combine_fn=_compose)
        state = decay_total * state + input_total
    tl.store(last_ptr + ((batch * dim + channels) * N)[:, None] + states[None, :], state, mask=in_dim[:, None])


@triton.jit
def _selective_scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, boundary_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr,
    dim, length, n_chunks,
    sB_b, sB_g, sB_n, sB_l, B_per_group, sC_b, sC_g, sC_n, sC_l, C_per_group,
    dB_b, dB_g, dB_n, dB_l, dC_b, dC_g, dC_n, dC_l,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
):
    batch = tl.program_id(0)
    channels = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    states = tl.arange(0, N)
    in_dim = channels < dim
    A = tl.load(A_ptr + channels[:, None] * N + states[None, :], mask=in_dim[:, None], other=0.0)
    skip = tl.load(D_ptr + channels, mask=in_dim, other=0.0) if HAS_D else tl.zeros((BLOCK_D,), tl.float32)
    bias = tl.load(bias_ptr + channels, mask=in_dim, other=0.0) if HAS_BIAS else tl.zeros((BLOCK_D,), tl.float32)
    rows = (batch * dim + channels) * length
    boundary_rows = ((batch * dim + channels) * n_chunks)[:, None] * N + states[None, :]
    first_in_chunk = (tl.arange(0, BLOCK_L) == 0)[None, None, :]

    h_next = tl.zeros((BLOCK_D, N), dtype=tl.float32)  # adjoint at the first step of the chunk after
    dA = tl.zeros((BLOCK_D, N), dtype=tl.float32)
    dskip = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for reversed_chunk in range(0, n_chunks):
        chunk = n_chunks - 1 - reversed_chunk
        state = tl.load(boundary_ptr + boundary_rows + chunk * N, mask=in_dim[:, None], other=0.0)
        steps = chunk * BLOCK_L + tl.arange(0, BLOCK_L)
        inside = in_dim[:, None] & (steps[None, :] < length)
        inside3 = inside[:, None, :]
        offsets = rows[:, None] + steps[None, :]
        u = tl.load(u_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
        step, raw = _step_sizes(delta_ptr, bias, offsets, inside, SOFTPLUS)
        B, dB_offsets = _load_bc(B_ptr, batch, channels, steps, inside3, sB_b, sB_g, sB_n, sB_l, B_per_group, N)
        C, dC_offsets = _load_bc(C_ptr, batch, channels, steps, inside3, sC_b, sC_g, sC_n, sC_l, C_per_group, N)
        decay = tl.exp(step[:, None, :] * A[:, :, None])
        inputs = (step * u)[:, None, :] * B
        decay_prefix, input_prefix = tl.associative_scan((decay, inputs), axis=2, combine_fn=_compose)
        x = decay_prefix * state[:, :, None] + input_prefix

        # The previous states: the same scan over the chunk's steps shifted by one, whose
        # first element is the identity, so it yields the boundary state there.
        previous = inside & (steps[None, :] > chunk * BLOCK_L)
        prev_offsets = offsets - 1
        u_prev = tl.load(u_ptr + prev_offsets, mask=previous, other=0.0).to(tl.float32)
        step_prev, _ = _step_sizes(delta_ptr, bias, prev_offsets, previous, SOFTPLUS)
        B_prev, _ = _load_bc(B_ptr, batch, channels, steps - 1, previous[:, None, :], sB_b, sB_g, sB_n, sB_l,
                             B_per_group, N)
        decay_prev = tl.exp(step_prev[:, None, :] * A[:, :, None])
        inputs_prev = (step_prev * u_prev)[:, None, :] * B_prev
        decay_prefix, input_prefix = tl.associative_scan((decay_prev, inputs_prev), axis=2, combine_fn=_compose)
        x_prev = decay_prefix * state[:, :, None] + input_prefix

        dout = tl.load(dout_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
        dy = dout
        if HAS_Z:
            z = tl.load(z_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
            gate = tl.sigmoid(z)
            pre_gate = tl.sum(x * C, axis=1) + skip[:, None] * u
            dz = dout * pre_gate * gate * (1.0 + z * (1.0 - gate))
            tl.store(dz_ptr + offsets, dz.to(dz_ptr.dtype.element_ty), mask=inside)
            dy = dout * z * gate
        dy = tl.where(inside, dy, 0.0)
        dskip += tl.sum(dy * u, axis=1)
        tl.atomic_add(dC_ptr + batch * dC_b + (channels // C_per_group)[:, None, None] * dC_g
                      + states[None, :, None] * dC_n + steps[None, None, :] * dC_l, dy[:, None, :] * x, mask=inside3)

        # Adjoint, backwards in time: the gate of step t is the decay of step t + 1 (0 after the end).
        following = in_dim[:, None] & (steps[None, :] + 1 < length)
        step_next, _ = _step_sizes(delta_ptr, bias, offsets + 1, following, SOFTPLUS)
        decay_next = tl.where(following[:, None, :], tl.exp(step_next[:, None, :] * A[:, :, None]), 0.0)
        gate_suffix, h_suffix = tl.associative_scan((decay_next, dy[:, None, :] * C), axis=2, combine_fn=_compose,
                                                    reverse=True)
        h = gate_suffix * h_next[:, :, None] + h_suffix

        dstep = tl.sum(h * u[:, None, :] * B + h * x_prev * decay * A[:, :, None], axis=1)
        du = skip[:, None] * dy + tl.sum(h * B, axis=1) * step
        dA += tl.sum(h * x_prev * decay * step[:, None, :], axis=2)
        tl.atomic_add(dB_ptr + batch * dB_b + (channels // B_per_group)[:, None, None] * dB_g
                      + states[None, :, None] * dB_n + steps[None, None, :] * dB_l,
                      h * (step * u)[:, None, :], mask=inside3)
        if SOFTPLUS:
            dstep = tl.where(raw > 20.0, dstep, dstep * tl.sigmoid(raw))
        dstep = tl.where(inside, dstep, 0.0)
        dbias += tl.sum(dstep, axis=1)
        tl.store(du_ptr + offsets, du.to(du_ptr.dtype.element_ty), mask=inside)
        tl.store(ddelta_ptr + offsets, dstep.to(ddelta_ptr.dtype.element_ty), mask=inside)
        h_next = tl.sum(tl.where(first_in_chunk, h, 0.0), axis=2)

    per_channel = batch * dim + channels
    tl.store(dA_ptr + per_channel[:, None] * N + states[None, :], dA, mask=in_dim[:, None])
    tl.store(dD_ptr + per_channel, dskip, mask=in_dim)
    tl.store(dbias_ptr + per_channel, dbias, mask=in_dim)


def _layout(matrix: torch.Tensor, batch: int, dim: int) -> tuple[int, int, int, int, int]:
    """(stride over batch, over group, over N, over L, channels per group) of a B or C layout."""
    if matrix.dim() == 2:  # shared (dim, N): every channel is its own group, constant in time
        return 0, matrix.stride(0), matrix.stride(1), 0, 1
    if matrix.dim() == 3:  # (batch, N, L): one group
        return matrix.stride(0), 0, matrix.stride(1), matrix.stride(2), dim
    return matrix.stride(0), matrix.stride(1), matrix.stride(2), matrix.stride(3), dim // matrix.shape[1]


def check_selective_scan_inputs(u, delta, A, B, C, D, z, delta_bias) -> None:
    activations = {"u": u, "delta": delta, "B": B, "C": C, "z": z}
    weights = {"A": A, "D": D, "delta_bias": delta_bias}
    for name, tensor in {**activations, **weights}.items():
        if tensor is not None and not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    if u.dim() != 3:
        raise ValueError(f"u: expected shape (batch, dim, L), got {tuple(u.shape)}")
    batch, dim, length = u.shape
    for name, tensor in activations.items():
        if tensor is not None and tensor.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"{name}: expected float32, float16 or bfloat16, got {tensor.dtype}")
    for name in ("delta", "z"):
        if activations[name] is not None and activations[name].shape != u.shape:
            raise ValueError(f"{name}: expected the shape of u {tuple(u.shape)}, got {tuple(activations[name].shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A: expected shape (dim, N) = ({dim}, N), got {tuple(A.shape)}")
    state_size = A.shape[1]
    if state_size < 1 or state_size > 256 or state_size & (state_size - 1):
        raise ValueError(f"A: the state size N must be a power of two up to 256, got {state_size}")
    for name in ("A", "D", "delta_bias"):
        if weights[name] is not None and weights[name].dtype != torch.float32:
            raise TypeError(f"{name}: expected float32, got {weights[name].dtype}")
    for name in ("D", "delta_bias"):
        if weights[name] is not None and weights[name].shape != (dim,):
            raise ValueError(f"{name}: expected shape ({dim},), got {tuple(weights[name].shape)}")
    for name, matrix in (("B", B), ("C", C)):
        layouts = {2: (dim, state_size), 3: (batch, state_size, length)}
        if matrix.dim() == 4:
            groups = matrix.shape[1]
            if groups < 1 or dim % groups:
                raise ValueError(f"{name}: dim {dim} is not a multiple of its {groups} groups")
            layouts[4] = (batch, groups, state_size, length)
        if matrix.dim() not in layouts or tuple(matrix.shape) != layouts[matrix.dim()]:
            raise ValueError(f"{name}: expected (dim, N) = ({dim}, {state_size}), (batch, N, L) = "
                             f"({batch}, {state_size}, {length}) or (batch, G, N, L), got {tuple(matrix.shape)}")
    devices = {tensor.device for tensor in (*activations.values(), *weights.values()) if tensor is not None}
    if len(devices) > 1:
        raise ValueError(f"u, delta, A, B, C, D, z, delta_bias: expected one device, got {sorted(map(str, devices))}")


def _contiguous_in_time(tensor):
    return None if tensor is None else (tensor if tensor.stride(-1) == 1 else tensor.contiguous())


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        u, delta, z = (t if t is None else t.contiguous() for t in (u, delta, z))
        A = A.contiguous()
        B, C = _contiguous_in_time(B), _contiguous_in_time(C)
        batch, dim, length = u.shape
        n_states = A.shape[1]
        n_chunks = triton.cdiv(length, BLOCK_L)
        out = torch.empty_like(u)
        boundaries = torch.empty(batch, dim, max(n_chunks, 1), n_states, device=u.device, dtype=torch.float32)
        last_state = torch.zeros(batch, dim, n_states, device=u.device, dtype=torch.float32)
        flags = dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                     SOFTPLUS=bool(delta_softplus), N=n_states, BLOCK_D=BLOCK_D, BLOCK_L=BLOCK_L)
        if u.numel():
            grid = (batch, triton.cdiv(dim, BLOCK_D))
            _selective_scan_fwd_kernel[grid](
                u, delta, A, B, C, u if D is None else D, u if z is None else z,
                u if delta_bias is None else delta_bias, out, boundaries, last_state, dim, length, n_chunks,
                *_layout(B, batch, dim), *_layout(C, batch, dim), **flags)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, boundaries)
        ctx.flags, ctx.n_chunks = flags, n_chunks
        ctx.mark_non_differentiable(last_state)
        ctx.set_materialize_grads(False)
        return out, last_state

    @staticmethod
    def backward(ctx, dout, _):
        u, delta, A, B, C, D, z, delta_bias, boundaries = ctx.saved_tensors
        if dout is None:  # only the last state, which carries no gradient, was used
            return (None,) * 9
        batch, dim, length = u.shape
        dout = dout.contiguous()
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dz = torch.empty_like(z) if z is not None else None
        dB = torch.zeros(B.shape, device=B.device, dtype=torch.float32)
        dC = torch.zeros(C.shape, device=C.device, dtype=torch.float32)
        dA = torch.zeros(batch, dim, A.shape[1], device=u.device, dtype=torch.float32)
        dD = torch.zeros(batch, dim, device=u.device, dtype=torch.float32)
        dbias = torch.zeros(batch, dim, device=u.device, dtype=torch.float32)
        if u.numel():
            grid = (batch, triton.cdiv(dim, BLOCK_D))
            _selective_scan_bwd_kernel[grid](
                u, delta, A, B, C, u if D is None else D, u if z is None else z,
                u if delta_bias is None else delta_bias, dout, boundaries,
                du, ddelta, u if dz is None else dz, dB, dC, dA, dD, dbias, dim, length, ctx.n_chunks,
                *_layout(B, batch, dim), *_layout(C, batch, dim), *_layout(dB, batch, dim)[:4],
                *_layout(dC, batch, dim)[:4], **ctx.flags)
        return (du, ddelta, dA.sum(0), dB.to(B.dtype), dC.to(C.dtype), None if D is None else dD.sum(0), dz,
                None if delta_bias is None else dbias.sum(0), None)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False):
    """Mamba's selective scan (see the module docstring); differentiable in every tensor input."""
    check_selective_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    out, last_state = _SelectiveScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return (out, last_state) if return_last_state else out
