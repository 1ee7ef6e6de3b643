"""Mamba's selective scan (mamba-ssm's ``selective_scan_fn``) in Triton, forward and backward.

``selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
return_last_state=False)``:

- ``u``, ``delta``, ``z``: ``(batch, dim, L)``; ``A``: ``(dim, N)``, real;
- ``B`` and ``C``, each independently: shared ``(dim, N)``, per batch ``(batch, N, L)``, or
  grouped ``(batch, G, N, L)`` with ``dim % G == 0``, channel ``d`` using group ``d // (dim // G)``;
- ``D`` and ``delta_bias``: ``(dim,)``.

``delta <- delta + delta_bias`` (if given), then ``softplus(delta)`` if ``delta_softplus``
(torch's threshold: above 20 delta passes through unchanged). The state ``x (batch, dim, N)``
starts at 0, and for each step ``t``::

    x = exp(delta_t * A) * x + delta_t * B_t * u_t        y_t = sum_n C_t[n] * x[n]

then ``out = y + D * u`` (if D) and ``out = out * silu(z)`` (if z). ``out`` has u's dtype;
with ``return_last_state`` the result is ``(out, last_state)``, the state after the last step,
float32 ``(batch, dim, N)``, which carries no gradient. u, delta, z, B and C may be fp32, fp16 or
bf16 (each its own); A, D and delta_bias are float32. All arithmetic and the state are float32.
Every tensor input gets a gradient in its own dtype and shape. Inputs that are not contiguous
are copied with ``.contiguous()``; N that is not a power of two is padded internally (masked).

Forward: one program per (block of ``BLOCK_D`` channels, batch) walks the sequence once, in
chunks of ``BLOCK_L`` steps, holding the state ``(BLOCK_D, N)`` in registers. A chunk loads
``(BLOCK_D, BLOCK_L)`` tiles of u, delta and z (coalesced along L) and a ``(N, BLOCK_L)`` tile of
B and C (the channel block lies inside one group, see ``_block_d``), forms ``(decay, input) =
(exp(delta*A), delta*B*u)`` on a ``(BLOCK_D, N, BLOCK_L)`` tile and runs an associative scan along
the steps composing ``(a1, b1) then (a2, b2) = (a1*a2, b1*a2 + b2)``. It stores ``out`` and the
state at the end of every chunk, ``(batch, dim, N, n_chunks)`` float32: the only thing saved
besides the inputs (the last state is its last column).

Tiles: ``BLOCK_N`` is N rounded up to a power of two (the padding is masked); on a GPU
``BLOCK_L = clamp(4096 / BLOCK_N, 16, 64)`` (64 for N = 16) and ``BLOCK_D`` the largest power
of two up to ``4096 / (BLOCK_N * BLOCK_L)`` dividing dim and, for grouped B/C with G > 1, the
group size (so there is no channel padding and a block never straddles groups; an odd group
size means one-channel blocks). Under the interpreter ``BLOCK_L = 16`` and ``BLOCK_D <= 4``.

Backward: the same programs walk the chunks from the end. Each recomputes its chunk's states
from the saved boundary with the same scan, then runs the adjoint ``h_t = C_t dy_t +
exp(delta_{t+1} A) h_{t+1}`` as a reverse scan. To avoid shifting the decays by one step, the
reverse scan carries triples ``(first decay, product of the decays after the first, sum)``
(``_adjoint_compose``); the adjoint entering the chunk from the one after is carried in
registers. ``exp(delta_t A) x_{t-1}`` is recovered as ``x_t - delta_t B_t u_t``. Gradients of
A, D, delta_bias and of shared B/C are accumulated per program in registers and written as
per-batch float32 partials summed in torch (deterministic). Gradients of per-batch/grouped B
and C are summed over the program's channels in registers, then over programs with float32
``tl.atomic_add``: those two are NOT bitwise deterministic from run to run.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from menagerie.kernels.targets import INTERPRETING
from menagerie.kernels.validate import check_device, check_dtype

MAX_STATE = 256
# Elements of the (BLOCK_D, N, BLOCK_L) tile a program scans per chunk on a GPU, and warps per
# program: untuned guesses (no GPU was at hand). The backward keeps about twice as many such
# tiles live as the forward, hence more warps. The interpreter pays per element scanned, so
# there the tiles are small to waste little on padding.
TILE_ELEMENTS = 4096
FWD_WARPS, BWD_WARPS = 4, 8


@triton.jit
def _compose(decay_first, input_first, decay_then, input_then):
    return decay_first * decay_then, input_first * decay_then + input_then


@triton.jit
def _adjoint_compose(first_later, rest_later, sum_later, first_earlier, rest_earlier, sum_earlier):
    # A run of steps [i, j] is (exp(delta_i A), prod_{i<r<=j} exp(delta_r A), h_i restricted to [i, j]).
    # In the reverse scan the accumulated (later) run comes first, the earlier run second.
    bridge = rest_earlier * first_later
    return first_earlier, bridge * rest_later, sum_earlier + bridge * sum_later


@triton.jit
def _step_sizes(raw, bias, inside, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """delta (+ bias, through softplus) and d delta / d raw; delta is 0 outside (an identity step)."""
    if HAS_BIAS:
        raw = raw + bias[:, None]
    delta = raw
    slope = tl.full(raw.shape, 1.0, tl.float32)
    if SOFTPLUS:
        e = tl.exp(tl.minimum(raw, 20.0))
        one_plus = 1.0 + e
        tiny = one_plus == 1.0
        # Kahan's log1p(e): exact to float32 even where e is below float32's epsilon.
        log1p = tl.where(tiny, e, tl.log(one_plus) * (e / tl.where(tiny, 1.0, one_plus - 1.0)))
        delta = tl.where(raw > 20.0, raw, log1p)
        slope = tl.where(raw > 20.0, 1.0, e / one_plus)
    return tl.where(inside, delta, 0.0), slope


@triton.jit
def _bc_tile(base_ptr, shared, states, state_ok, steps, step_ok, length, VARIABLE: tl.constexpr):
    """B or C for one chunk, broadcastable to (BLOCK_D, BLOCK_N, BLOCK_L)."""
    if VARIABLE:
        tile = tl.load(
            base_ptr + states[:, None] * length + steps[None, :], mask=state_ok[:, None] & step_ok[None, :], other=0.0
        ).to(tl.float32)
        tile = tile[None, :, :]
    else:
        tile = shared[:, :, None]
    return tile


class ChannelBlock(NamedTuple):
    """One program's block of channels of one batch element, with their per-channel constants."""

    batch: tl.tensor
    channels: tl.tensor  # (BLOCK_D,) channel indices
    states: tl.tensor  # (BLOCK_N,) state indices
    channel_ok: tl.tensor
    state_ok: tl.tensor
    cs_ok: tl.tensor  # (BLOCK_D, BLOCK_N): both in range
    A: tl.tensor  # (BLOCK_D, BLOCK_N)
    skip: tl.tensor  # D, or zeros
    bias: tl.tensor  # delta_bias, or zeros
    B_slot: tl.tensor  # offset of B's (N, L) slice for this block's group, when B varies in time
    C_slot: tl.tensor
    B_shared: tl.tensor  # (BLOCK_D, BLOCK_N) B when it does not vary in time (else unused)
    C_shared: tl.tensor
    rows: tl.tensor  # (BLOCK_D,) offsets of the channels' rows of (batch, dim, L) tensors
    state_rows: tl.tensor  # (BLOCK_D, BLOCK_N) offsets into (batch, dim, N) tensors


@triton.jit
def _channel_block(
    # Pointers
    A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr,
    # Sizes
    dim, length, dstate, B_groups, B_group_size, C_groups, C_group_size,
    # Meta-parameters
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, VARIABLE_B: tl.constexpr, VARIABLE_C: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """This program's batch, channels and per-channel constants, shared by the forward and backward.

    Shared (time-invariant) B and C are loaded here as (BLOCK_D, N) tiles; when they vary
    in time their placeholders are unused.
    """
    block = tl.program_id(0)
    batch = tl.program_id(1)
    channels = block * BLOCK_D + tl.arange(0, BLOCK_D)
    states = tl.arange(0, BLOCK_N)
    channel_ok = channels < dim
    state_ok = states < dstate
    cs_ok = channel_ok[:, None] & state_ok[None, :]
    cs_offsets = channels[:, None] * dstate + states[None, :]
    A = tl.load(A_ptr + cs_offsets, mask=cs_ok, other=0.0)
    skip = tl.load(D_ptr + channels, mask=channel_ok, other=0.0) if HAS_D else tl.zeros((BLOCK_D,), tl.float32)
    bias = tl.load(bias_ptr + channels, mask=channel_ok, other=0.0) if HAS_BIAS else tl.zeros((BLOCK_D,), tl.float32)
    # The whole channel block lies in one group of B (and of C) when they vary in time:
    # the offsets of that group's (N, L) slice.
    B_slot = (batch * B_groups + (block * BLOCK_D) // B_group_size).to(tl.int64) * dstate * length
    C_slot = (batch * C_groups + (block * BLOCK_D) // C_group_size).to(tl.int64) * dstate * length
    B_shared = A
    C_shared = A
    if not VARIABLE_B:
        B_shared = tl.load(B_ptr + cs_offsets, mask=cs_ok, other=0.0).to(tl.float32)
    if not VARIABLE_C:
        C_shared = tl.load(C_ptr + cs_offsets, mask=cs_ok, other=0.0).to(tl.float32)
    rows = (batch * dim + channels).to(tl.int64) * length
    state_rows = ((batch * dim + channels).to(tl.int64) * dstate)[:, None] + states[None, :]
    return ChannelBlock(
        batch,
        channels,
        states,
        channel_ok,
        state_ok,
        cs_ok,
        A,
        skip,
        bias,
        B_slot,
        C_slot,
        B_shared,
        C_shared,
        rows,
        state_rows,
    )


@triton.jit
def _scan_chunk(
    # Pointers
    u_ptr, delta_ptr, B_base, C_base,
    # Sizes
    B_shared, C_shared, A, bias, x_before, rows, chunk, length, channel_ok, states, state_ok,
    # Meta-parameters
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, VARIABLE_B: tl.constexpr, VARIABLE_C: tl.constexpr,
    BLOCK_L: tl.constexpr,
):  # fmt: skip
    """Loads one chunk and scans it from the state before it: the states x (BLOCK_D, N, BLOCK_L)
    and the pieces the forward and backward both use."""
    steps = chunk * BLOCK_L + tl.arange(0, BLOCK_L)
    step_ok = steps < length
    inside = channel_ok[:, None] & step_ok[None, :]
    offsets = rows[:, None] + steps[None, :]
    u = tl.load(u_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    raw = tl.load(delta_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    delta, slope = _step_sizes(raw, bias, inside, HAS_BIAS, SOFTPLUS)
    B = _bc_tile(B_base, B_shared, states, state_ok, steps, step_ok, length, VARIABLE_B)
    C = _bc_tile(C_base, C_shared, states, state_ok, steps, step_ok, length, VARIABLE_C)
    # Outside the sequence delta = 0: decay 1 and input 0, the identity step.
    decay = tl.exp(delta[:, None, :] * A[:, :, None])
    inputs = (delta * u)[:, None, :] * B
    decay_prefix, input_prefix = tl.associative_scan((decay, inputs), axis=2, combine_fn=_compose)
    x = decay_prefix * x_before[:, :, None] + input_prefix
    return x, decay, inputs, u, delta, slope, B, C, steps, step_ok, inside, offsets


@triton.jit
def _selective_scan_fwd_kernel(
    # Pointers
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, states_ptr,
    # Sizes
    dim, length, dstate, n_chunks, B_groups, B_group_size, C_groups, C_group_size,
    # Meta-parameters
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    VARIABLE_B: tl.constexpr, VARIABLE_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_L: tl.constexpr,
):  # fmt: skip
    (
        batch,
        channels,
        states,
        channel_ok,
        state_ok,
        cs_ok,
        A,
        skip,
        bias,
        B_slot,
        C_slot,
        B_shared,
        C_shared,
        rows,
        state_rows,
    ) = _channel_block(
        A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, dim, length, dstate, B_groups, B_group_size, C_groups, C_group_size,
        HAS_D, HAS_BIAS, VARIABLE_B, VARIABLE_C, BLOCK_D, BLOCK_N,
    )  # fmt: skip
    last_step = (tl.arange(0, BLOCK_L) == BLOCK_L - 1)[None, None, :]

    x_carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for chunk in range(0, n_chunks):
        x, decay, inputs, u, delta, _, B, C, steps, step_ok, inside, offsets = _scan_chunk(
            u_ptr, delta_ptr, B_ptr + B_slot, C_ptr + C_slot, B_shared, C_shared, A, bias, x_carry, rows, chunk,
            length, channel_ok, states, state_ok, HAS_BIAS, SOFTPLUS, VARIABLE_B, VARIABLE_C, BLOCK_L,
        )  # fmt: skip
        out = tl.sum(x * C, axis=1)
        if HAS_D:
            out += skip[:, None] * u
        if HAS_Z:
            z = tl.load(z_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
            out = out * (z * tl.sigmoid(z))
        tl.store(out_ptr + offsets, out.to(out_ptr.dtype.element_ty), mask=inside)
        # Padding steps are identities, so the last column is the state after the chunk's last step.
        x_carry = tl.sum(tl.where(last_step, x, 0.0), axis=2)
        tl.store(states_ptr + state_rows * n_chunks + chunk, x_carry, mask=cs_ok)


@triton.jit
def _selective_scan_bwd_kernel(
    # Pointers
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, states_ptr, dout_ptr, du_ptr, ddelta_ptr, dz_ptr,
    dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    # Sizes
    dim, length, dstate, n_chunks, B_groups, B_group_size, C_groups, C_group_size,
    # Meta-parameters
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    VARIABLE_B: tl.constexpr, VARIABLE_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_L: tl.constexpr,
):  # fmt: skip
    (
        batch,
        channels,
        states,
        channel_ok,
        state_ok,
        cs_ok,
        A,
        skip,
        bias,
        B_slot,
        C_slot,
        B_shared,
        C_shared,
        rows,
        state_rows,
    ) = _channel_block(
        A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, dim, length, dstate, B_groups, B_group_size, C_groups, C_group_size,
        HAS_D, HAS_BIAS, VARIABLE_B, VARIABLE_C, BLOCK_D, BLOCK_N,
    )  # fmt: skip
    first_step = (tl.arange(0, BLOCK_L) == 0)[None, None, :]
    ones = tl.full((BLOCK_D, BLOCK_N, BLOCK_L), 1.0, tl.float32)

    h_carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # exp(delta_e A) h_e from the chunk after
    dA = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dB_shared = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dC_shared = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dskip = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for reversed_chunk in range(0, n_chunks):
        chunk = n_chunks - 1 - reversed_chunk
        after_first = (tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.int32) + chunk) > 0  # the first chunk starts at 0
        x_start = tl.load(states_ptr + state_rows * n_chunks + chunk - 1, mask=cs_ok & after_first, other=0.0)
        x, decay, inputs, u, delta, slope, B, C, steps, step_ok, inside, offsets = _scan_chunk(
            u_ptr, delta_ptr, B_ptr + B_slot, C_ptr + C_slot, B_shared, C_shared, A, bias, x_start, rows, chunk,
            length, channel_ok, states, state_ok, HAS_BIAS, SOFTPLUS, VARIABLE_B, VARIABLE_C, BLOCK_L,
        )  # fmt: skip
        delta_u = delta * u

        dout = tl.load(dout_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
        dy = dout
        if HAS_Z:
            z = tl.load(z_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
            gate = tl.sigmoid(z)
            pre_gate = tl.sum(x * C, axis=1)
            if HAS_D:
                pre_gate += skip[:, None] * u
            dz = dout * pre_gate * gate * (1.0 + z * (1.0 - gate))
            tl.store(dz_ptr + offsets, dz.to(dz_ptr.dtype.element_ty), mask=inside)
            dy = dout * z * gate
        du = tl.zeros((BLOCK_D, BLOCK_L), dtype=tl.float32)
        if HAS_D:
            du = dy * skip[:, None]
            dskip += tl.sum(dy * u, axis=1)

        # Adjoint h_t = dL/dx_t, backwards in time; outside the sequence dy = 0 and decay = 1.
        _, decay_after, h_inside = tl.associative_scan(
            (decay, ones, dy[:, None, :] * C), axis=2, combine_fn=_adjoint_compose, reverse=True
        )
        h = h_inside + decay_after * h_carry[:, :, None]
        h_carry = tl.sum(tl.where(first_step, decay * h, 0.0), axis=2)

        decayed = x - inputs  # exp(delta_t A) x_{t-1}
        h_B = tl.sum(h * B, axis=1)
        du += delta * h_B
        h_decayed = h * decayed
        ddelta = u * h_B + tl.sum(h_decayed * A[:, :, None], axis=1)
        dA += tl.sum(h_decayed * delta[:, None, :], axis=2)
        if VARIABLE_B:
            tl.atomic_add(
                dB_ptr + B_slot + states[:, None] * length + steps[None, :],
                tl.sum(h * delta_u[:, None, :], axis=0),
                mask=state_ok[:, None] & step_ok[None, :],
            )
        else:
            dB_shared += tl.sum(h * delta_u[:, None, :], axis=2)
        if VARIABLE_C:
            tl.atomic_add(
                dC_ptr + C_slot + states[:, None] * length + steps[None, :],
                tl.sum(dy[:, None, :] * x, axis=0),
                mask=state_ok[:, None] & step_ok[None, :],
            )
        else:
            dC_shared += tl.sum(dy[:, None, :] * x, axis=2)
        ddelta = tl.where(inside, ddelta * slope, 0.0)
        if HAS_BIAS:
            dbias += tl.sum(ddelta, axis=1)
        tl.store(du_ptr + offsets, du.to(du_ptr.dtype.element_ty), mask=inside)
        tl.store(ddelta_ptr + offsets, ddelta.to(ddelta_ptr.dtype.element_ty), mask=inside)

    # Per-batch partials, (batch, dim, N) and (batch, dim): summed over the batch in torch.
    tl.store(dA_ptr + state_rows, dA, mask=cs_ok)
    if not VARIABLE_B:
        tl.store(dB_ptr + state_rows, dB_shared, mask=cs_ok)
    if not VARIABLE_C:
        tl.store(dC_ptr + state_rows, dC_shared, mask=cs_ok)
    if HAS_D:
        tl.store(dD_ptr + batch * dim + channels, dskip, mask=channel_ok)
    if HAS_BIAS:
        tl.store(dbias_ptr + batch * dim + channels, dbias, mask=channel_ok)


def check_selective_scan_inputs(u, delta, A, B, C, D=None, z=None, delta_bias=None) -> None:
    """Raise a TypeError or ValueError naming the first argument that does not fit."""
    for name, tensor in (("u", u), ("delta", delta), ("B", B), ("C", C), ("z", z)):
        if tensor is not None or name != "z":
            check_dtype(name, tensor)
    for name, tensor in (("A", A), ("D", D), ("delta_bias", delta_bias)):
        if tensor is not None or name == "A":
            check_dtype(name, tensor, (torch.float32,))
    if u.dim() != 3:
        raise ValueError(f"u: expected shape (batch, dim, L), got {tuple(u.shape)}")
    batch, dim, length = u.shape
    for name, tensor in (("delta", delta), ("z", z)):
        if tensor is not None and tensor.shape != u.shape:
            raise ValueError(f"{name}: expected the shape of u {tuple(u.shape)}, got {tuple(tensor.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A: expected shape (dim, N) with dim = {dim}, got {tuple(A.shape)}")
    n_states = A.shape[1]
    if not 1 <= n_states <= MAX_STATE:
        raise ValueError(f"A: the state size N must be between 1 and {MAX_STATE}, got {n_states}")
    for name, matrix in (("B", B), ("C", C)):
        if matrix.dim() == 4:
            groups = matrix.shape[1]
            if groups < 1 or dim % groups:
                raise ValueError(f"{name}: dim {dim} is not divisible by its number of groups G = {groups}")
        expected = {
            2: (dim, n_states),
            3: (batch, n_states, length),
            4: (batch, matrix.shape[1] if matrix.dim() == 4 else 0, n_states, length),
        }.get(matrix.dim())
        if expected is None or tuple(matrix.shape) != expected:
            raise ValueError(
                f"{name}: expected (dim, N) = {(dim, n_states)}, (batch, N, L) = "
                f"{(batch, n_states, length)} or (batch, G, N, L), got {tuple(matrix.shape)}"
            )
    for name, tensor in (("D", D), ("delta_bias", delta_bias)):
        if tensor is not None and tuple(tensor.shape) != (dim,):
            raise ValueError(f"{name}: expected shape ({dim},), got {tuple(tensor.shape)}")
    named = (("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z), ("delta_bias", delta_bias))
    for name, tensor in named:
        if tensor is not None:
            check_device(name, tensor, "u", u)


def _bc_layout(matrix: torch.Tensor, dim: int):
    """(contiguous tensor, varies in time, groups, channels per group) of a B or C argument."""
    matrix = matrix.contiguous()
    if matrix.dim() == 2:
        return matrix, False, 1, 1
    if matrix.dim() == 3:
        return matrix, True, 1, dim
    return matrix, True, matrix.shape[1], dim // matrix.shape[1]


def _block_d(dim: int, limit: int, group_sizes) -> int:
    """Largest power of two <= limit dividing dim and, for G > 1, every group's size (so no
    channel padding, and a channel block never straddles two groups)."""
    divisor = dim
    for size in group_sizes:
        divisor = math.gcd(divisor, size)
    block = 1
    while block * 2 <= limit and divisor % (block * 2) == 0:
        block *= 2
    return block


def _tiles(dim: int, n_states: int, group_sizes):
    block_n = triton.next_power_of_2(n_states)
    if INTERPRETING:
        return _block_d(dim, 4, group_sizes), block_n, 16
    block_l = max(16, min(64, TILE_ELEMENTS // block_n))
    return _block_d(dim, max(1, TILE_ELEMENTS // (block_n * block_l)), group_sizes), block_n, block_l


class SelectiveScanFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        u, delta, A = u.contiguous(), delta.contiguous(), A.contiguous()
        z = None if z is None else z.contiguous()
        D = None if D is None else D.contiguous()
        delta_bias = None if delta_bias is None else delta_bias.contiguous()
        batch, dim, length = u.shape
        n_states = A.shape[1]
        B_c, variable_B, groups_B, size_B = _bc_layout(B, dim)
        C_c, variable_C, groups_C, size_C = _bc_layout(C, dim)
        sizes = [
            size
            for variable, groups, size in ((variable_B, groups_B, size_B), (variable_C, groups_C, size_C))
            if variable and groups > 1
        ]
        block_d, block_n, block_l = _tiles(dim, n_states, sizes)
        n_chunks = triton.cdiv(length, block_l)
        out = torch.empty_like(u)
        boundaries = torch.zeros(batch, dim, n_states, n_chunks, device=u.device, dtype=torch.float32)
        meta = dict(
            HAS_D=D is not None,
            HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(delta_softplus),
            VARIABLE_B=variable_B,
            VARIABLE_C=variable_C,
            BLOCK_D=block_d,
            BLOCK_N=block_n,
            BLOCK_L=block_l,
        )
        shape_args = (dim, length, n_states, n_chunks, groups_B, size_B, groups_C, size_C)
        if out.numel():
            _selective_scan_fwd_kernel[(dim // block_d, batch)](
                u,
                delta,
                A,
                B_c,
                C_c,
                u if D is None else D,
                u if z is None else z,
                u if delta_bias is None else delta_bias,
                out,
                boundaries,
                *shape_args,
                **meta,
                num_warps=FWD_WARPS,
            )
        last_state = (
            boundaries[..., -1].contiguous()
            if n_chunks
            else torch.zeros(batch, dim, n_states, device=u.device, dtype=torch.float32)
        )
        ctx.save_for_backward(u, delta, A, B_c, C_c, D, z, delta_bias, boundaries)
        ctx.meta, ctx.shape_args, ctx.bc_shapes = meta, shape_args, (B.shape, C.shape)
        ctx.mark_non_differentiable(last_state)
        ctx.set_materialize_grads(False)
        return out, last_state

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout, _dlast_state):
        u, delta, A, B, C, D, z, delta_bias, boundaries = ctx.saved_tensors
        if dout is None:  # only the last state, which carries no gradient, was used
            return (None,) * 9
        batch, dim, length = u.shape
        meta = ctx.meta
        f32 = dict(device=u.device, dtype=torch.float32)
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dz = None if z is None else torch.empty_like(z)
        dA = torch.zeros(batch, dim, A.shape[1], **f32)
        # Variable B/C: float32 atomics into their own layout; shared: per-batch partials.
        dB = torch.zeros(B.shape if meta["VARIABLE_B"] else (batch, *B.shape), **f32)
        dC = torch.zeros(C.shape if meta["VARIABLE_C"] else (batch, *C.shape), **f32)
        dD = torch.zeros(batch, dim, **f32)
        dbias = torch.zeros(batch, dim, **f32)
        if u.numel():
            _selective_scan_bwd_kernel[(dim // meta["BLOCK_D"], batch)](
                u,
                delta,
                A,
                B,
                C,
                u if D is None else D,
                u if z is None else z,
                u if delta_bias is None else delta_bias,
                boundaries,
                dout.contiguous(),
                du,
                ddelta,
                u if dz is None else dz,
                dA,
                dB,
                dC,
                dD,
                dbias,
                *ctx.shape_args,
                **meta,
                num_warps=BWD_WARPS,
            )
        if not meta["VARIABLE_B"]:
            dB = dB.sum(0)
        if not meta["VARIABLE_C"]:
            dC = dC.sum(0)
        B_shape, C_shape = ctx.bc_shapes
        return (
            du,
            ddelta,
            dA.sum(0),
            dB.to(B.dtype).reshape(B_shape),
            dC.to(C.dtype).reshape(C_shape),
            None if D is None else dD.sum(0),
            dz,
            None if delta_bias is None else dbias.sum(0),
            None,
        )


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False):
    """Mamba's selective scan (see the module docstring): ``out``, or ``(out, last_state)``."""
    check_selective_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    out, last_state = SelectiveScanFunction.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus))
    return (out, last_state) if return_last_state else out
