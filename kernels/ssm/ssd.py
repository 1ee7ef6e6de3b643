"""Mamba-2's state-space duality (SSD) scan in Triton, forward and backward: the meaning of
mamba-ssm's ``mamba_chunk_scan_combined``.

``ssd_scan(x, dt, A, B, C, chunk_size=64, D=None, z=None, dt_bias=None, dt_softplus=False,
initial_states=None, return_final_states=False)``:

- ``x`` and ``z``: ``(batch, L, heads, P)``; ``dt``: ``(batch, L, heads)``; ``A``: ``(heads,)``;
- ``B`` and ``C``: ``(batch, L, G, N)`` with ``heads % G == 0``, head ``h`` reading group
  ``h // (heads // G)``; ``D``: ``(heads,)`` or ``(heads, P)``; ``dt_bias``: ``(heads,)``;
- ``initial_states``: ``(batch, heads, P, N)``.

With ``dt' = softplus(dt + dt_bias)`` (the bias and the softplus each only when asked for;
above 20 softplus passes its input through, like torch's) the state ``h (batch, heads, P, N)``
starts at ``initial_states`` (or 0) and, for each step t::

    h_t = exp(dt'_t A) h_{t-1} + dt'_t x_t B_t^T        y_t = h_t C_t + D x_t

then ``y *= silu(z)`` when z is given. Packed sequences (``mamba_chunk_scan_combined``'s
``seq_idx``): ``seq_idx (batch, L)``, non-decreasing integers equal within a sequence, resets the
state where a new sequence starts (``h_t = dt'_t x_t B_t^T`` when ``seq_idx[t] != seq_idx[t - 1]``),
so that no state crosses a boundary; ``cu_seqlens`` (``[0, ..., L]`` with batch 1) says the same
by the sequences' bounds. Initial states enter the first sequence, the final states are those
after the last step. ``y`` has x's dtype; with ``return_final_states`` the
result is ``(y, final_states)``, the state after the last step in float32, differentiable like
``y``. Every tensor may be float32, float16 or bfloat16; the state, cumulative sums and
accumulators are float32, and the matmuls take their operands in x's dtype (``C B^T`` in B's;
float32 ones in IEEE precision, not TF32). Every input gets a gradient in its own dtype. ``chunk_size`` (a power
of two >= 16) only changes the blocking, not the result; L need not be a multiple of it.

Structure (the SSD paper's steps; inside a chunk every sum is a matmul, ``tl.dot``). With the
per-chunk inclusive cumulative sums ``cum_t = sum_{r <= t} dt'_r A`` of the chunk's log decays:

1. ``_chunk_cumsum_kernel``: ``dt'`` and ``cum`` per chunk, ``(batch, heads, chunks, chunk)``
   float32 (steps past L get ``dt' = 0``: identity steps).
2. ``_chunk_scores_kernel``: ``C_t . B_s`` per (batch, chunk, group), ``(batch, chunks, groups,
   chunk, chunk)`` float32, only the tiles on or below the diagonal; shared by the group's heads.
3. ``_chunk_state_kernel``: each chunk's own contribution to the state after it,
   ``S_c = sum_s exp(cum_end - cum_s) dt'_s x_s B_s^T``, ``(batch, chunks, heads, P, N)``.
4. ``_state_passing_kernel``: the short scan over chunks ``H_{c+1} = exp(cum_end) H_c + S_c``,
   replacing ``S_c`` in place by the state ``H_c`` entering chunk c; also the final state.
5. ``_chunk_scan_kernel``: ``y_t = exp(cum_t) H_c C_t + sum_{s <= t} (C_t . B_s)
   exp(cum_t - cum_s) dt'_s x_s + D x_t``, gated, blocked as ``BLOCK_M`` output rows by
   ``BLOCK_K`` source columns (never a whole chunk-by-chunk tile).

Saved for the backward: the inputs, ``dt'``, ``cum`` and the entering states ``H_c``; the
scores (step 2 again), every decay and the pre-gate output are recomputed. The backward:

1. (with z) ``_chunk_scan_kernel`` again, recomputing the pre-gate output to form ``dz`` and
   the gradient reaching it, ``dy = dout * silu(z)``.
2. ``_chunk_state_kernel`` again, with ``dy`` and C weighted by ``exp(cum_t)``: the gradient of
   each entering state through its chunk's outputs.
3. ``_state_passing_bwd_kernel``: the reverse scan over chunks, giving the gradient of each
   chunk's contribution ``S_c``, of the initial states and of each chunk's total decay.
4. ``_chunk_scan_bwd_dx_kernel`` (rows are source steps s) for dx and dB, and
   ``_chunk_scan_bwd_dc_kernel`` (rows are output steps t) for dC; each also yields its side of
   the gradient of the cumulative sums. A program owns one group's rows and loops over the
   group's heads, so dB and dC are summed without atomics (deterministic).
5. ``_chunk_cumsum_bwd_kernel``: the gradient of ``cum`` to that of each step's log decay (a
   reverse cumulative sum), then to dt (through the bias and softplus), A and dt_bias.

Gradients of A and dt_bias are per-(batch, chunk) float32 partials summed in torch; D's is
``sum dy * x`` in torch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from menagerie.kernels.ssm.packed import packed_sequence_ids
from menagerie.kernels.ssm.selective_scan import _step_sizes
from menagerie.kernels.targets import INTERPRETING, check_kernel_device
from menagerie.kernels.tiles import tiling
from menagerie.kernels.validate import check_device, check_dtype, dot_precision

MAX_HEAD_DIM = 256
MAX_STATE = 256
MIN_CHUNK = 16  # tl.dot's smallest tile side
# Elements per step of the loops that contract over N or P: a float32 IEEE tl.dot keeps much of
# its whole contraction per thread, so N = 128 or P = 64 at once would spill.
INNER_BLOCK = 16 if INTERPRETING else 32
STATE_BLOCK = 1024  # state elements per program in the state-passing scans (memory-bound, not tuned)
HEAD_BLOCK = 8  # heads per program in the cumulative-sum kernels


if INTERPRETING:
    # The interpreter cannot time configurations. Row and column blocks differ so that a swapped
    # block size shows in the tests (chunk 32 and up; chunk 16 can only take 16 x 16).
    SCORE_CONFIGS = [
        tiling(BLOCK_M=16, BLOCK_K=16, warps=4, stages=1),
        tiling(BLOCK_M=32, BLOCK_K=16, warps=4, stages=1),
    ]
    STATE_CONFIGS = [tiling(BLOCK_P=16, BLOCK_K=16, warps=4, stages=1)]
    SCAN_CONFIGS = [
        tiling(BLOCK_M=16, BLOCK_K=16, BLOCK_P=16, warps=4, stages=1),
        tiling(BLOCK_M=32, BLOCK_K=16, BLOCK_P=16, warps=4, stages=1),
    ]
    BWD_CONFIGS = [tiling(BLOCK_M=16, BLOCK_K=16, warps=4, stages=1), tiling(BLOCK_M=32, BLOCK_K=16, warps=4, stages=1)]
else:
    # Untuned GPU guesses (no GPU was at hand). Compiled offline for the full preset (L 4096, 80
    # heads, P 64, N 128, chunk 256), every one is spill-free on sm_80 and sm_90 in fp16 and bf16;
    # in fp32 (IEEE dots) some larger tiles spill and the smaller ones do not. The last of each
    # list fits chunk 16.
    SCORE_CONFIGS = [
        tiling(BLOCK_M=64, BLOCK_K=64, warps=4, stages=2),
        tiling(BLOCK_M=128, BLOCK_K=64, warps=8, stages=2),
        tiling(BLOCK_M=32, BLOCK_K=32, warps=4, stages=2),
        tiling(BLOCK_M=16, BLOCK_K=16, warps=4, stages=2),
    ]
    STATE_CONFIGS = [
        tiling(BLOCK_P=64, BLOCK_K=32, warps=4, stages=2),
        tiling(BLOCK_P=32, BLOCK_K=32, warps=4, stages=2),
        tiling(BLOCK_P=64, BLOCK_K=64, warps=8, stages=2),
        tiling(BLOCK_P=32, BLOCK_K=16, warps=4, stages=2),
    ]
    SCAN_CONFIGS = [
        tiling(BLOCK_M=64, BLOCK_K=32, BLOCK_P=64, warps=4, stages=2),
        tiling(BLOCK_M=64, BLOCK_K=32, BLOCK_P=32, warps=4, stages=2),
        tiling(BLOCK_M=128, BLOCK_K=32, BLOCK_P=64, warps=8, stages=2),
        tiling(BLOCK_M=16, BLOCK_K=16, BLOCK_P=32, warps=4, stages=2),
    ]
    BWD_CONFIGS = [
        tiling(BLOCK_M=32, BLOCK_K=64, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_K=32, warps=8, stages=1),
        tiling(BLOCK_M=16, BLOCK_K=64, warps=4, stages=1),
        tiling(BLOCK_M=16, BLOCK_K=16, warps=8, stages=1),
    ]


def _prune_to_chunk(configs, named_args, **kwargs):
    """Only tilings whose row and column blocks fit in a chunk; under the interpreter the largest of them."""
    chunk = kwargs["CHUNK"]
    fitting = [
        config
        for config in configs
        if all(config.kwargs.get(name, MIN_CHUNK) <= chunk for name in ("BLOCK_M", "BLOCK_K"))
    ]
    return fitting[-1:] if INTERPRETING else fitting


PRUNE = {"early_config_prune": _prune_to_chunk}
# Re-tuned per shape class and (where one kernel serves both) per forward/backward use; dtypes are keyed automatically.
TUNE_KEY = ["head_dim", "dstate", "heads_per_group", "CHUNK"]


# ----------------------------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------------------------


class ChunkSteps(NamedTuple):
    """What ``_chunk_steps`` gives a (batch, chunk, block of heads) program, tiles (BLOCK_H, CHUNK)."""

    batch: tl.tensor
    chunk: tl.tensor
    head: tl.tensor  # (BLOCK_H,) head indices
    step: tl.tensor  # (CHUNK,) steps within the chunk
    head_ok: tl.tensor
    inside: tl.tensor  # a real head and a step before L
    dt_at: tl.tensor  # offsets into dt (batch, L, heads)
    dtp: tl.tensor  # dt', 0 past L
    slope: tl.tensor  # d dt' / d dt
    A: tl.tensor  # (BLOCK_H,)
    rows: tl.tensor  # offsets into the (batch, heads, chunks, chunk) arrays


@triton.jit
def _chunk_steps(
    # Pointers
    dt_ptr, A_ptr, bias_ptr,
    # Sizes
    length, heads, n_chunks,
    # Meta-parameters
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, BLOCK_H: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    """This program's (batch, chunk, block of heads) as (heads, CHUNK) tiles: dt' (0 past L), its
    derivative by dt, A, and the offsets into dt and into the (batch, heads, chunks, chunk) arrays."""
    batch, chunk, head_block = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    head = head_block * BLOCK_H + tl.arange(0, BLOCK_H)
    step = tl.arange(0, CHUNK)
    head_ok = head < heads
    inside = head_ok[:, None] & (chunk * CHUNK + step < length)[None, :]
    dt_at = (batch * length + chunk * CHUNK + step[None, :]).to(tl.int64) * heads + head[:, None]
    raw = tl.load(dt_ptr + dt_at, mask=inside, other=0.0).to(tl.float32)
    bias = tl.zeros((BLOCK_H,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + head, mask=head_ok, other=0.0).to(tl.float32)
    dtp, slope = _step_sizes(raw, bias, inside, HAS_BIAS, SOFTPLUS)
    A = tl.load(A_ptr + head, mask=head_ok, other=0.0).to(tl.float32)
    rows = ((batch * heads + head[:, None]).to(tl.int64) * n_chunks + chunk) * CHUNK + step[None, :]
    return ChunkSteps(batch, chunk, head, step, head_ok, inside, dt_at, dtp, slope, A, rows)


@triton.jit
def _chunk_cumsum_kernel(
    # Pointers
    dt_ptr, A_ptr, bias_ptr, dtp_ptr, cum_ptr,
    # Sizes
    length, heads, n_chunks,
    # Meta-parameters
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, BLOCK_H: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    """For one (batch, chunk, block of heads): ``dt' = softplus(dt + dt_bias)`` (0 past L) and the
    chunk's inclusive cumulative sum ``cum_t = sum_{r <= t} dt'_r A``, both into (batch, heads, chunks, chunk)."""
    steps = _chunk_steps(dt_ptr, A_ptr, bias_ptr, length, heads, n_chunks, HAS_BIAS, SOFTPLUS, BLOCK_H, CHUNK)
    heads_ok = steps.head_ok[:, None]
    tl.store(dtp_ptr + steps.rows, steps.dtp, mask=heads_ok)
    tl.store(cum_ptr + steps.rows, tl.cumsum(steps.dtp * steps.A[:, None], axis=1), mask=heads_ok)


@triton.jit
def _entering_sequence(seq_idx_ptr, batch, chunk, length, CHUNK: tl.constexpr):
    """The sequence that the state entering ``chunk`` belongs to: that of the previous chunk's
    last step, or the first sequence for chunk 0 (initial states enter it)."""
    return tl.load(seq_idx_ptr + batch.to(tl.int64) * length + tl.maximum(chunk * CHUNK - 1, 0))


@triton.jit
def _last_sequence(seq_idx_ptr, batch, chunk, length, CHUNK: tl.constexpr):
    """The sequence of ``chunk``'s last step: the one that the state after the chunk belongs to."""
    return tl.load(seq_idx_ptr + batch.to(tl.int64) * length + tl.minimum((chunk + 1) * CHUNK, length) - 1)


@triton.jit
def _carry(
    cum_ptr,
    seq_idx_ptr,
    batch_head,
    batch,
    chunk,
    length,
    n_chunks,
    HAS_SEQ_IDX: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """The factor by which the state entering ``chunk`` reaches the state after it: the chunk's
    total decay, or 0 when a new sequence starts inside the chunk."""
    decay = tl.exp(tl.load(cum_ptr + (batch_head.to(tl.int64) * n_chunks + chunk) * CHUNK + CHUNK - 1))
    if HAS_SEQ_IDX:
        same = _last_sequence(seq_idx_ptr, batch, chunk, length, CHUNK) == _entering_sequence(
            seq_idx_ptr, batch, chunk, length, CHUNK
        )
        decay = tl.where(same, decay, 0.0)
    return decay


@triton.autotune(configs=SCORE_CONFIGS, key=TUNE_KEY, prune_configs_by=PRUNE)
@triton.jit
def _chunk_scores_kernel(
    # Pointers
    B_ptr, C_ptr, scores_ptr,
    # Sizes
    length, heads, head_dim, groups, dstate, n_chunks, heads_per_group,
    # Meta-parameters
    DOT_PRECISION: tl.constexpr, CHUNK: tl.constexpr, BLOCK_INNER: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_K: tl.constexpr,
):  # fmt: skip
    """``scores[t, s] = C_t . B_s`` for one (batch, group, chunk) and a BLOCK_M x BLOCK_K tile of
    (t, s), into (batch, chunks, groups, chunk, chunk) float32, shared by the group's heads. Tiles
    wholly above the diagonal (s > t everywhere) are never read and not computed."""
    batch_group, chunk, tile = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    batch, group = batch_group // groups, batch_group % groups
    col_blocks = tl.cdiv(CHUNK, BLOCK_K)
    row_block, col_block = tile // col_blocks, tile % col_blocks
    if col_block * BLOCK_K < (row_block + 1) * BLOCK_M:
        row = row_block * BLOCK_M + tl.arange(0, BLOCK_M)
        col = col_block * BLOCK_K + tl.arange(0, BLOCK_K)
        chunk_len = tl.minimum(CHUNK, length - chunk * CHUNK)
        row_ok, col_ok = row < chunk_len, col < chunk_len
        row_position = (batch * length + chunk * CHUNK + row).to(tl.int64)
        col_position = (batch * length + chunk * CHUNK + col).to(tl.int64)
        dot_type = B_ptr.dtype.element_ty
        acc = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
        for start in range(0, dstate, BLOCK_INNER):
            n = start + tl.arange(0, BLOCK_INNER)
            n_ok = n < dstate
            C_t = tl.load(
                C_ptr + (row_position[:, None] * groups + group) * dstate + n[None, :],
                mask=row_ok[:, None] & n_ok[None, :],
                other=0.0,
            ).to(dot_type)
            B_s = tl.load(
                B_ptr + (col_position[:, None] * groups + group) * dstate + n[None, :],
                mask=col_ok[:, None] & n_ok[None, :],
                other=0.0,
            )
            acc += tl.dot(C_t, tl.trans(B_s), input_precision=DOT_PRECISION)
        out = ((batch * n_chunks + chunk) * groups + group).to(tl.int64) * CHUNK * CHUNK
        tl.store(scores_ptr + out + row[:, None] * CHUNK + col[None, :], acc)


@triton.autotune(configs=STATE_CONFIGS, key=TUNE_KEY + ["FROM_END"], prune_configs_by=PRUNE)
@triton.jit
def _chunk_state_kernel(
    # Pointers
    left_ptr, right_ptr, dtp_ptr, cum_ptr, seq_idx_ptr, out_ptr,
    # Sizes
    length, heads, head_dim, groups, dstate, n_chunks, heads_per_group,
    # Meta-parameters
    FROM_END: tl.constexpr, HAS_SEQ_IDX: tl.constexpr, DOT_PRECISION: tl.constexpr, CHUNK: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """``out[p, n] = sum_s w_s left_s[p] right_s[n]`` over one chunk's steps, for one (batch, head,
    chunk, block of P), into (batch, chunks, heads, P, N) float32. ``left`` is laid out like x,
    ``right`` like B.

    ``FROM_END``: ``w_s = dt'_s exp(cum_end - cum_s)`` with left = x and right = B, the chunk's own
    contribution to the state after it. Otherwise ``w_s = exp(cum_s)`` with left = dy and
    right = C: the gradient of the state entering the chunk through the chunk's outputs. With
    ``seq_idx``, ``w_s`` is 0 for steps outside the sequence of that state (the chunk's last one
    from the end, the entering one otherwise).
    """
    batch_head, chunk, p_block = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    batch, head = batch_head // heads, batch_head % heads
    group = head // heads_per_group
    p = p_block * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    p_ok, n_ok = p < head_dim, n < dstate
    chunk_len = tl.minimum(CHUNK, length - chunk * CHUNK)
    cum_row = (batch_head.to(tl.int64) * n_chunks + chunk) * CHUNK
    cum_end = tl.load(cum_ptr + cum_row + CHUNK - 1)
    if HAS_SEQ_IDX:
        if FROM_END:
            state_sequence = _last_sequence(seq_idx_ptr, batch, chunk, length, CHUNK)
        else:
            state_sequence = _entering_sequence(seq_idx_ptr, batch, chunk, length, CHUNK)
    acc = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    for start in range(0, chunk_len, BLOCK_K):
        step = start + tl.arange(0, BLOCK_K)
        step_ok = step < chunk_len
        position = (batch * length + chunk * CHUNK + step).to(tl.int64)
        left = tl.load(
            left_ptr + (position[:, None] * heads + head) * head_dim + p[None, :],
            mask=step_ok[:, None] & p_ok[None, :],
            other=0.0,
        )
        right = tl.load(
            right_ptr + (position[:, None] * groups + group) * dstate + n[None, :],
            mask=step_ok[:, None] & n_ok[None, :],
            other=0.0,
        )
        cum = tl.load(cum_ptr + cum_row + step, mask=step_ok, other=0.0)
        if FROM_END:
            weight = tl.load(dtp_ptr + cum_row + step, mask=step_ok, other=0.0) * tl.exp(cum_end - cum)
        else:
            weight = tl.exp(cum)
        if HAS_SEQ_IDX:
            step_ok &= tl.load(seq_idx_ptr + position, mask=step_ok, other=-1) == state_sequence
        weight = tl.where(step_ok, weight, 0.0)
        weighted = (left.to(tl.float32) * weight[:, None]).to(left.dtype)
        acc += tl.dot(tl.trans(weighted), right.to(left.dtype), input_precision=DOT_PRECISION)
    out = ((batch * n_chunks + chunk) * heads + head).to(tl.int64) * head_dim * dstate
    tl.store(out_ptr + out + p[:, None] * dstate + n[None, :], acc, mask=p_ok[:, None] & n_ok[None, :])


@triton.jit
def _state_passing_kernel(
    # Pointers
    states_ptr, cum_ptr, seq_idx_ptr, initial_ptr, final_ptr,
    # Sizes
    length, heads, n_chunks, state_size,
    # Meta-parameters
    HAS_INITIAL: tl.constexpr, HAS_SEQ_IDX: tl.constexpr, CHUNK: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """The scan over chunks for one (batch, head, block of state elements): ``H_0`` = initial
    states (or 0), ``H_{c+1} = exp(cum_end of c) H_c + S_c`` (``S_c`` alone when a sequence starts
    in chunk c). ``states`` holds ``S_c`` on entry and the entering states ``H_c`` on return;
    ``final`` gets ``H_{chunks}``."""
    batch_head, block = tl.program_id(0), tl.program_id(1)
    batch, head = batch_head // heads, batch_head % heads
    element = block * BLOCK + tl.arange(0, BLOCK)
    ok = element < state_size
    own = batch_head.to(tl.int64) * state_size + element
    if HAS_INITIAL:
        state = tl.load(initial_ptr + own, mask=ok, other=0.0).to(tl.float32)
    else:
        state = tl.zeros((BLOCK,), dtype=tl.float32)
    for chunk in range(0, n_chunks):
        slot = ((batch * n_chunks + chunk) * heads + head).to(tl.int64) * state_size + element
        contribution = tl.load(states_ptr + slot, mask=ok, other=0.0)
        tl.store(states_ptr + slot, state, mask=ok)
        state = (
            _carry(cum_ptr, seq_idx_ptr, batch_head, batch, chunk, length, n_chunks, HAS_SEQ_IDX, CHUNK) * state
            + contribution
        )
    tl.store(final_ptr + own, state, mask=ok)


@triton.autotune(configs=SCAN_CONFIGS, key=TUNE_KEY + ["GATE_BACKWARD"], prune_configs_by=PRUNE)
@triton.jit
def _chunk_scan_kernel(
    # Pointers
    x_ptr, C_ptr, scores_ptr, D_ptr, z_ptr, dtp_ptr, cum_ptr, states_ptr, seq_idx_ptr, out_ptr, dout_ptr, dz_ptr,
    # Sizes
    length, heads, head_dim, groups, dstate, n_chunks, heads_per_group,
    # Meta-parameters
    HAS_D: tl.constexpr, D_PER_CHANNEL: tl.constexpr, HAS_Z: tl.constexpr, HAS_SEQ_IDX: tl.constexpr,
    GATE_BACKWARD: tl.constexpr, DOT_PRECISION: tl.constexpr, CHUNK: tl.constexpr, BLOCK_INNER: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    """The output for one (batch, head, chunk, block of BLOCK_M steps, block of P)::

        y_t = exp(cum_t) H C_t + sum_{s <= t} (C_t . B_s) exp(cum_t - cum_s) dt'_s x_s + D x_t

    with H the state entering the chunk (``H C_t`` taken BLOCK_INNER states at a time), the scores
    ``C_t . B_s`` read from ``_chunk_scores_kernel`` and the sum taken BLOCK_K source steps at a
    time; then ``out = y * silu(z)``. With ``GATE_BACKWARD`` (z given) it writes instead ``dz`` and
    ``out = dout * silu(z)``, the gradient reaching y. With ``seq_idx`` the first term is kept
    where step t is in H's sequence, and the sum runs over steps s of t's sequence.
    """
    batch_head, chunk, tile = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    batch, head = batch_head // heads, batch_head % heads
    group = head // heads_per_group
    p_blocks = tl.cdiv(head_dim, BLOCK_P)
    row_block, p_block = tile // p_blocks, tile % p_blocks
    row = row_block * BLOCK_M + tl.arange(0, BLOCK_M)
    p = p_block * BLOCK_P + tl.arange(0, BLOCK_P)
    chunk_len = tl.minimum(CHUNK, length - chunk * CHUNK)
    row_ok, p_ok = row < chunk_len, p < head_dim
    dot_type = x_ptr.dtype.element_ty
    cum_row = (batch_head.to(tl.int64) * n_chunks + chunk) * CHUNK
    row_position = (batch * length + chunk * CHUNK + row).to(tl.int64)
    scores_at = ((batch * n_chunks + chunk) * groups + group).to(tl.int64) * CHUNK * CHUNK
    state_at = ((batch * n_chunks + chunk) * heads + head).to(tl.int64) * head_dim * dstate

    cum_t = tl.load(cum_ptr + cum_row + row, mask=row_ok, other=0.0)
    acc = tl.zeros((BLOCK_M, BLOCK_P), dtype=tl.float32)
    for start in range(0, dstate, BLOCK_INNER):
        n = start + tl.arange(0, BLOCK_INNER)
        n_ok = n < dstate
        C_t = tl.load(
            C_ptr + (row_position[:, None] * groups + group) * dstate + n[None, :],
            mask=row_ok[:, None] & n_ok[None, :],
            other=0.0,
        ).to(dot_type)
        entering = tl.load(
            states_ptr + state_at + p[:, None] * dstate + n[None, :], mask=p_ok[:, None] & n_ok[None, :], other=0.0
        )
        acc += tl.dot(C_t, tl.trans(entering.to(dot_type)), input_precision=DOT_PRECISION)
    reach = tl.exp(cum_t)
    if HAS_SEQ_IDX:
        seq_t = tl.load(seq_idx_ptr + row_position, mask=row_ok, other=-1)
        reach = tl.where(seq_t == _entering_sequence(seq_idx_ptr, batch, chunk, length, CHUNK), reach, 0.0)
    acc *= reach[:, None]
    for start in range(0, tl.minimum((row_block + 1) * BLOCK_M, chunk_len), BLOCK_K):
        col = start + tl.arange(0, BLOCK_K)
        col_ok = col < chunk_len
        col_position = (batch * length + chunk * CHUNK + col).to(tl.int64)
        x_s = tl.load(
            x_ptr + (col_position[:, None] * heads + head) * head_dim + p[None, :],
            mask=col_ok[:, None] & p_ok[None, :],
            other=0.0,
        )
        cum_s = tl.load(cum_ptr + cum_row + col, mask=col_ok, other=0.0)
        dtp_s = tl.load(dtp_ptr + cum_row + col, mask=col_ok, other=0.0)
        visible = (col[None, :] <= row[:, None]) & col_ok[None, :] & row_ok[:, None]
        if HAS_SEQ_IDX:
            visible &= seq_t[:, None] == tl.load(seq_idx_ptr + col_position, mask=col_ok, other=-1)[None, :]
        scores = tl.load(scores_ptr + scores_at + row[:, None] * CHUNK + col[None, :], mask=visible, other=0.0)
        weights = tl.exp(tl.where(visible, cum_t[:, None] - cum_s[None, :], float("-inf"))) * dtp_s[None, :]
        acc += tl.dot((scores * weights).to(dot_type), x_s, input_precision=DOT_PRECISION)

    tile_ok = row_ok[:, None] & p_ok[None, :]
    offsets = (row_position[:, None] * heads + head) * head_dim + p[None, :]
    if HAS_D:
        x_t = tl.load(x_ptr + offsets, mask=tile_ok, other=0.0).to(tl.float32)
        if D_PER_CHANNEL:
            acc += tl.load(D_ptr + head * head_dim + p, mask=p_ok, other=0.0).to(tl.float32)[None, :] * x_t
        else:
            acc += tl.load(D_ptr + head).to(tl.float32) * x_t
    if HAS_Z:
        z = tl.load(z_ptr + offsets, mask=tile_ok, other=0.0).to(tl.float32)
        gate = tl.sigmoid(z)
        if GATE_BACKWARD:
            dout = tl.load(dout_ptr + offsets, mask=tile_ok, other=0.0).to(tl.float32)
            dz = dout * acc * gate * (1.0 + z * (1.0 - gate))
            tl.store(dz_ptr + offsets, dz.to(dz_ptr.dtype.element_ty), mask=tile_ok)
            acc = dout
        acc = acc * z * gate
    tl.store(out_ptr + offsets, acc.to(out_ptr.dtype.element_ty), mask=tile_ok)


# ----------------------------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------------------------


@triton.jit
def _state_passing_bwd_kernel(
    # Pointers
    dstates_ptr, states_ptr, cum_ptr, seq_idx_ptr, dfinal_ptr, dinitial_ptr, ddecay_ptr,
    # Sizes
    length, heads, n_chunks, state_size,
    # Meta-parameters
    HAS_SEQ_IDX: tl.constexpr, CHUNK: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """The reverse scan over chunks for one (batch, head, block of state elements). With G the
    gradient of the state after chunk c (``dfinal`` after the last), the state's gradient before
    it is ``G' = dH_c + exp(cum_end) G``, where ``dH_c`` (in ``dstates`` on entry) comes through
    the chunk's outputs. Writes G over ``dH_c`` (the gradient of the chunk's contribution
    ``S_c``), ``exp(cum_end) sum(G * H_c)`` per chunk and block into ``ddecay`` (the gradient of
    the chunk's total log decay), and the last G' into ``dinitial``. Where a sequence starts in
    chunk c the carry ``exp(cum_end)`` is 0 (see ``_carry``), and so are both of its terms."""
    batch_head, block = tl.program_id(0), tl.program_id(1)
    batch, head = batch_head // heads, batch_head % heads
    element = block * BLOCK + tl.arange(0, BLOCK)
    ok = element < state_size
    own = batch_head.to(tl.int64) * state_size + element
    grad = tl.load(dfinal_ptr + own, mask=ok, other=0.0)
    for reversed_chunk in range(0, n_chunks):
        chunk = n_chunks - 1 - reversed_chunk
        slot = ((batch * n_chunks + chunk) * heads + head).to(tl.int64) * state_size + element
        through_outputs = tl.load(dstates_ptr + slot, mask=ok, other=0.0)
        entering = tl.load(states_ptr + slot, mask=ok, other=0.0)
        decay = _carry(cum_ptr, seq_idx_ptr, batch_head, batch, chunk, length, n_chunks, HAS_SEQ_IDX, CHUNK)
        tl.store(
            ddecay_ptr + (batch_head * n_chunks + chunk) * tl.num_programs(1) + block, decay * tl.sum(grad * entering)
        )
        tl.store(dstates_ptr + slot, grad, mask=ok)
        grad = through_outputs + decay * grad
    tl.store(dinitial_ptr + own, grad, mask=ok)


@triton.autotune(configs=BWD_CONFIGS, key=TUNE_KEY, prune_configs_by=PRUNE)
@triton.jit
def _chunk_scan_bwd_dx_kernel(
    # Pointers
    x_ptr, B_ptr, C_ptr, scores_ptr, D_ptr, dy_ptr, dtp_ptr, cum_ptr, dstates_ptr, seq_idx_ptr, dx_ptr, dB_ptr,
    dcum_ptr, dend_ptr, ddtp_ptr,
    # Sizes
    length, heads, head_dim, groups, dstate, n_chunks, heads_per_group,
    # Meta-parameters
    HAS_D: tl.constexpr, D_PER_CHANNEL: tl.constexpr, HAS_SEQ_IDX: tl.constexpr, DOT_PRECISION: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_INNER: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """Gradients at source steps s, for one (batch, group, chunk, block of BLOCK_M steps), looping
    over the group's heads. With ``u_s = dt'_s x_s``, ``w_ts = exp(cum_t - cum_s)`` (t >= s),
    ``e_s = exp(cum_end - cum_s)`` and dS the gradient of the chunk's state contribution:

        du_s = sum_{t >= s} (C_t . B_s) w_ts dy_t + e_s dS B_s
        dB_s = sum over heads of [ sum_{t >= s} (dy_t . u_s) w_ts C_t + e_s u_s^T dS ]

    Per head it writes ``dx_s = dt'_s du_s + D dy_s``, ``x_s . du_s`` (dt's share through u), the
    source side of the cumulative sums' gradient ``-sum_t (dy_t . u_s)(C_t . B_s) w_ts - q_s`` and
    ``q_s = e_s u_s . (dS B_s)`` (which the chunk's end receives). With ``seq_idx``, ``w_ts`` is 0
    across sequences and ``e_s`` outside the chunk's last sequence.
    """
    batch_group, chunk, row_block = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    batch, group = batch_group // groups, batch_group % groups
    row = row_block * BLOCK_M + tl.arange(0, BLOCK_M)
    p = tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    chunk_len = tl.minimum(CHUNK, length - chunk * CHUNK)
    row_ok, p_ok, n_ok = row < chunk_len, p < head_dim, n < dstate
    dot_type = x_ptr.dtype.element_ty
    row_position = (batch * length + chunk * CHUNK + row).to(tl.int64)
    bc_rows = (row_position[:, None] * groups + group) * dstate + n[None, :]
    scores_at = ((batch * n_chunks + chunk) * groups + group).to(tl.int64) * CHUNK * CHUNK
    reaches_end = row_ok
    if HAS_SEQ_IDX:
        seq_s = tl.load(seq_idx_ptr + row_position, mask=row_ok, other=-1)
        reaches_end &= seq_s == _last_sequence(seq_idx_ptr, batch, chunk, length, CHUNK)
    dB = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for member in range(0, heads_per_group):
        head = group * heads_per_group + member
        cum_row = ((batch * heads + head).to(tl.int64) * n_chunks + chunk) * CHUNK
        cum_s = tl.load(cum_ptr + cum_row + row, mask=row_ok, other=0.0)
        dtp_s = tl.load(dtp_ptr + cum_row + row, mask=row_ok, other=0.0)
        to_end = tl.where(reaches_end, tl.exp(tl.load(cum_ptr + cum_row + CHUNK - 1) - cum_s), 0.0)
        offsets = (row_position[:, None] * heads + head) * head_dim + p[None, :]
        tile_ok = row_ok[:, None] & p_ok[None, :]
        x_s = tl.load(x_ptr + offsets, mask=tile_ok, other=0.0)
        state_at = ((batch * n_chunks + chunk) * heads + head).to(tl.int64) * head_dim * dstate
        du = tl.zeros((BLOCK_M, BLOCK_P), dtype=tl.float32)
        for start in range(0, dstate, BLOCK_INNER):  # dS B_s, BLOCK_INNER states at a time
            n_part = start + tl.arange(0, BLOCK_INNER)
            part_ok = n_part < dstate
            B_part = tl.load(
                B_ptr + (row_position[:, None] * groups + group) * dstate + n_part[None, :],
                mask=row_ok[:, None] & part_ok[None, :],
                other=0.0,
            ).to(dot_type)
            dS_part = tl.load(
                dstates_ptr + state_at + p[:, None] * dstate + n_part[None, :],
                mask=p_ok[:, None] & part_ok[None, :],
                other=0.0,
            ).to(dot_type)
            du += tl.dot(B_part, tl.trans(dS_part), input_precision=DOT_PRECISION)
        du *= to_end[:, None]
        dS = tl.load(
            dstates_ptr + state_at + p[:, None] * dstate + n[None, :], mask=p_ok[:, None] & n_ok[None, :], other=0.0
        ).to(dot_type)
        scale = dtp_s * to_end
        dB += tl.dot((x_s.to(tl.float32) * scale[:, None]).to(dot_type), dS, input_precision=DOT_PRECISION)
        to_end_share = dtp_s * tl.sum(du * x_s.to(tl.float32), axis=1)
        source_share = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for start in range((row_block * BLOCK_M // BLOCK_K) * BLOCK_K, chunk_len, BLOCK_K):
            col = start + tl.arange(0, BLOCK_K)
            col_ok = col < chunk_len
            col_position = (batch * length + chunk * CHUNK + col).to(tl.int64)
            C_t = tl.load(
                C_ptr + (col_position[:, None] * groups + group) * dstate + n[None, :],
                mask=col_ok[:, None] & n_ok[None, :],
                other=0.0,
            ).to(dot_type)
            dy_t = tl.load(
                dy_ptr + (col_position[:, None] * heads + head) * head_dim + p[None, :],
                mask=col_ok[:, None] & p_ok[None, :],
                other=0.0,
            )
            cum_t = tl.load(cum_ptr + cum_row + col, mask=col_ok, other=0.0)
            visible = (col[None, :] >= row[:, None]) & col_ok[None, :] & row_ok[:, None]
            if HAS_SEQ_IDX:
                visible &= tl.load(seq_idx_ptr + col_position, mask=col_ok, other=-1)[None, :] == seq_s[:, None]
            decay = tl.exp(tl.where(visible, cum_t[None, :] - cum_s[:, None], float("-inf")))
            scores = tl.load(
                scores_ptr + scores_at + col[None, :] * CHUNK + row[:, None], mask=visible, other=0.0
            )  # [s, t] = C_t . B_s
            du += tl.dot((scores * decay).to(dot_type), dy_t, input_precision=DOT_PRECISION)
            dy_u = tl.dot(x_s, tl.trans(dy_t), input_precision=DOT_PRECISION) * (decay * dtp_s[:, None])
            source_share += tl.sum(dy_u * scores, axis=1)
            dB += tl.dot(dy_u.to(dot_type), C_t, input_precision=DOT_PRECISION)

        dx = du * dtp_s[:, None]
        if HAS_D:
            dy_s = tl.load(dy_ptr + offsets, mask=tile_ok, other=0.0).to(tl.float32)
            if D_PER_CHANNEL:
                dx += tl.load(D_ptr + head * head_dim + p, mask=p_ok, other=0.0).to(tl.float32)[None, :] * dy_s
            else:
                dx += tl.load(D_ptr + head).to(tl.float32) * dy_s
        tl.store(dx_ptr + offsets, dx.to(dx_ptr.dtype.element_ty), mask=tile_ok)
        tl.store(ddtp_ptr + cum_row + row, tl.sum(du * x_s.to(tl.float32), axis=1), mask=row_ok)
        tl.store(dcum_ptr + cum_row + row, -(source_share + to_end_share), mask=row_ok)
        tl.store(dend_ptr + cum_row + row, to_end_share, mask=row_ok)
    tl.store(dB_ptr + bc_rows, dB.to(dB_ptr.dtype.element_ty), mask=row_ok[:, None] & n_ok[None, :])


@triton.autotune(configs=BWD_CONFIGS, key=TUNE_KEY, prune_configs_by=PRUNE)
@triton.jit
def _chunk_scan_bwd_dc_kernel(
    # Pointers
    x_ptr, B_ptr, C_ptr, scores_ptr, dy_ptr, dtp_ptr, cum_ptr, states_ptr, seq_idx_ptr, dC_ptr, dcum_ptr,
    # Sizes
    length, heads, head_dim, groups, dstate, n_chunks, heads_per_group,
    # Meta-parameters
    HAS_SEQ_IDX: tl.constexpr, DOT_PRECISION: tl.constexpr, CHUNK: tl.constexpr, BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_INNER: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """Gradients at output steps t, for one (batch, group, chunk, block of BLOCK_M steps), looping
    over the group's heads. With ``w_ts = exp(cum_t - cum_s)`` (s <= t) and H the entering state:

        dC_t = sum over heads of [ exp(cum_t) dy_t H + sum_{s <= t} (dy_t . x_s) dt'_s w_ts B_s ]

    and per head the output side of the cumulative sums' gradient,
    ``dy_t . y_t`` without the D term: ``exp(cum_t) C_t . (dy_t H) + sum_s (dy_t . x_s) dt'_s w_ts (C_t . B_s)``.
    With ``seq_idx`` the H terms are kept where t is in H's sequence and ``w_ts`` is 0 across sequences.
    """
    batch_group, chunk, row_block = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    batch, group = batch_group // groups, batch_group % groups
    row = row_block * BLOCK_M + tl.arange(0, BLOCK_M)
    p = tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    chunk_len = tl.minimum(CHUNK, length - chunk * CHUNK)
    row_ok, p_ok, n_ok = row < chunk_len, p < head_dim, n < dstate
    dot_type = x_ptr.dtype.element_ty
    row_position = (batch * length + chunk * CHUNK + row).to(tl.int64)
    bc_rows = (row_position[:, None] * groups + group) * dstate + n[None, :]
    scores_at = ((batch * n_chunks + chunk) * groups + group).to(tl.int64) * CHUNK * CHUNK
    C_t = tl.load(C_ptr + bc_rows, mask=row_ok[:, None] & n_ok[None, :], other=0.0).to(tl.float32)
    sees_entering = row_ok
    if HAS_SEQ_IDX:
        seq_t = tl.load(seq_idx_ptr + row_position, mask=row_ok, other=-1)
        sees_entering &= seq_t == _entering_sequence(seq_idx_ptr, batch, chunk, length, CHUNK)
    dC = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for member in range(0, heads_per_group):
        head = group * heads_per_group + member
        cum_row = ((batch * heads + head).to(tl.int64) * n_chunks + chunk) * CHUNK
        cum_t = tl.load(cum_ptr + cum_row + row, mask=row_ok, other=0.0)
        dy_rows = (row_position[:, None] * heads + head) * head_dim
        dy_t = tl.load(dy_ptr + dy_rows + p[None, :], mask=row_ok[:, None] & p_ok[None, :], other=0.0)
        state_at = ((batch * n_chunks + chunk) * heads + head).to(tl.int64) * head_dim * dstate
        through_state = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for start in range(0, head_dim, BLOCK_INNER):  # dy_t H, BLOCK_INNER channels at a time
            p_part = start + tl.arange(0, BLOCK_INNER)
            part_ok = p_part < head_dim
            dy_part = tl.load(dy_ptr + dy_rows + p_part[None, :], mask=row_ok[:, None] & part_ok[None, :], other=0.0)
            entering = tl.load(
                states_ptr + state_at + p_part[:, None] * dstate + n[None, :],
                mask=part_ok[:, None] & n_ok[None, :],
                other=0.0,
            ).to(dot_type)
            through_state += tl.dot(dy_part, entering, input_precision=DOT_PRECISION)
        through_state *= tl.where(sees_entering, tl.exp(cum_t), 0.0)[:, None]
        dC += through_state
        output_share = tl.sum(through_state * C_t, axis=1)
        for start in range(0, tl.minimum((row_block + 1) * BLOCK_M, chunk_len), BLOCK_K):
            col = start + tl.arange(0, BLOCK_K)
            col_ok = col < chunk_len
            col_position = (batch * length + chunk * CHUNK + col).to(tl.int64)
            B_s = tl.load(
                B_ptr + (col_position[:, None] * groups + group) * dstate + n[None, :],
                mask=col_ok[:, None] & n_ok[None, :],
                other=0.0,
            ).to(dot_type)
            x_s = tl.load(
                x_ptr + (col_position[:, None] * heads + head) * head_dim + p[None, :],
                mask=col_ok[:, None] & p_ok[None, :],
                other=0.0,
            )
            cum_s = tl.load(cum_ptr + cum_row + col, mask=col_ok, other=0.0)
            dtp_s = tl.load(dtp_ptr + cum_row + col, mask=col_ok, other=0.0)
            visible = (col[None, :] <= row[:, None]) & col_ok[None, :] & row_ok[:, None]
            if HAS_SEQ_IDX:
                visible &= seq_t[:, None] == tl.load(seq_idx_ptr + col_position, mask=col_ok, other=-1)[None, :]
            decay = tl.exp(tl.where(visible, cum_t[:, None] - cum_s[None, :], float("-inf")))
            dy_u = tl.dot(dy_t, tl.trans(x_s), input_precision=DOT_PRECISION) * (decay * dtp_s[None, :])
            dC += tl.dot(dy_u.to(dot_type), B_s, input_precision=DOT_PRECISION)
            scores = tl.load(scores_ptr + scores_at + row[:, None] * CHUNK + col[None, :], mask=visible, other=0.0)
            output_share += tl.sum(dy_u * scores, axis=1)
        tl.store(dcum_ptr + cum_row + row, output_share, mask=row_ok)
    tl.store(dC_ptr + bc_rows, dC.to(dC_ptr.dtype.element_ty), mask=row_ok[:, None] & n_ok[None, :])


@triton.jit
def _chunk_cumsum_bwd_kernel(
    # Pointers
    dt_ptr, A_ptr, bias_ptr, dcum_source_ptr, dcum_output_ptr, dend_ptr, ddecay_ptr, ddtp_ptr, ddt_ptr, dA_ptr,
    dbias_ptr,
    # Sizes
    length, heads, n_chunks,
    # Meta-parameters
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, BLOCK_H: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    """For one (batch, chunk, block of heads): the gradient of ``cum`` (both sides from the scan
    kernels, plus, at the chunk's end, the end shares and the total decay's gradient) becomes
    that of each log decay ``a_r = dt'_r A`` as ``da_r = sum_{t >= r} dcum_t``; then
    ``d dt'_r = da_r A + x_r . du_r``, dt's gradient through softplus and the bias, and the
    per-(batch, chunk) partials of dA and dt_bias."""
    batch, chunk, head, step, head_ok, inside, dt_at, dtp, slope, A, rows = _chunk_steps(
        dt_ptr, A_ptr, bias_ptr, length, heads, n_chunks, HAS_BIAS, SOFTPLUS, BLOCK_H, CHUNK
    )
    dcum = tl.load(dcum_source_ptr + rows, mask=inside, other=0.0) + tl.load(
        dcum_output_ptr + rows, mask=inside, other=0.0
    )
    end = tl.sum(tl.load(dend_ptr + rows, mask=inside, other=0.0), axis=1)
    end += tl.load(ddecay_ptr + (batch * heads + head) * n_chunks + chunk, mask=head_ok, other=0.0)
    dcum += tl.where(step[None, :] == CHUNK - 1, end[:, None], 0.0)
    dlog_decay = tl.cumsum(dcum, axis=1, reverse=True)
    ddtp = dlog_decay * A[:, None] + tl.load(ddtp_ptr + rows, mask=inside, other=0.0)
    ddt = tl.where(inside, ddtp * slope, 0.0)
    tl.store(ddt_ptr + dt_at, ddt.to(ddt_ptr.dtype.element_ty), mask=inside)
    partial = (batch * n_chunks + chunk) * heads + head
    tl.store(dA_ptr + partial, tl.sum(dlog_decay * dtp, axis=1), mask=head_ok)
    if HAS_BIAS:
        tl.store(dbias_ptr + partial, tl.sum(ddt, axis=1), mask=head_ok)


# ----------------------------------------------------------------------------------------------
# Launchers: one per kernel, in the order of the module docstring's steps
# ----------------------------------------------------------------------------------------------


def _shape_args(x, B, n_chunks):
    batch, length, heads, head_dim = x.shape
    groups, dstate = B.shape[2], B.shape[3]
    return dict(
        length=length,
        heads=heads,
        head_dim=head_dim,
        groups=groups,
        dstate=dstate,
        n_chunks=n_chunks,
        heads_per_group=heads // groups,
    )


def _whole_block(size: int) -> int:
    """A block holding all of N or P: the next power of two, at least tl.dot's smallest side."""
    return max(MIN_CHUNK, triton.next_power_of_2(size))


def _sequences(seq_idx, placeholder):
    """The kernels' packed-sequence arguments: ``seq_idx``, or an unread placeholder pointer."""
    return dict(seq_idx_ptr=placeholder if seq_idx is None else seq_idx, HAS_SEQ_IDX=seq_idx is not None)


def _chunk_sums(dt, A, dt_bias, dt_softplus, n_chunks, chunk_size):
    """Forward step 1: dt' and the per-chunk cumulative sums of dt' A, each (batch, heads, chunks, chunk) float32."""
    batch, length, heads = dt.shape
    dtp = torch.empty(batch, heads, n_chunks, chunk_size, device=dt.device, dtype=torch.float32)
    cum = torch.empty_like(dtp)
    _chunk_cumsum_kernel[(batch, n_chunks, triton.cdiv(heads, HEAD_BLOCK))](
        dt, A, dt if dt_bias is None else dt_bias, dtp, cum, length, heads, n_chunks,
        HAS_BIAS=dt_bias is not None, SOFTPLUS=dt_softplus, BLOCK_H=HEAD_BLOCK, CHUNK=chunk_size,
    )  # fmt: skip
    return dtp, cum


def _chunk_scores(B, C, shapes, chunk_size):
    """Forward step 2: ``C_t . B_s`` per (batch, chunk, group), (batch, chunks, groups, chunk, chunk)
    float32; only the tiles that reach the diagonal or below are written."""
    batch, groups = B.shape[0], B.shape[2]
    scores = torch.empty(batch, shapes["n_chunks"], groups, chunk_size, chunk_size, device=B.device,
                         dtype=torch.float32)  # fmt: skip

    def grid(meta):
        return (batch * groups, shapes["n_chunks"],
                triton.cdiv(chunk_size, meta["BLOCK_M"]) * triton.cdiv(chunk_size, meta["BLOCK_K"]))  # fmt: skip

    _chunk_scores_kernel[grid](
        B, C, scores, **shapes, DOT_PRECISION=dot_precision(B.dtype), CHUNK=chunk_size, BLOCK_INNER=INNER_BLOCK,
    )  # fmt: skip
    return scores


def _chunk_state(left, right, dtp, cum, seq_idx, shapes, chunk_size, from_end):
    """Forward step 3 (and backward step 2): ``_chunk_state_kernel``'s (batch, chunks, heads, P, N)
    float32 sums (see its docstring)."""
    batch, heads = left.shape[0], left.shape[2]
    out = torch.empty(batch, shapes["n_chunks"], heads, shapes["head_dim"], shapes["dstate"], device=left.device,
                      dtype=torch.float32)  # fmt: skip

    def grid(meta):
        return batch * heads, shapes["n_chunks"], triton.cdiv(shapes["head_dim"], meta["BLOCK_P"])

    _chunk_state_kernel[grid](
        left, right, dtp, cum, cum if seq_idx is None else seq_idx, out, **shapes,
        FROM_END=from_end, HAS_SEQ_IDX=seq_idx is not None, DOT_PRECISION=dot_precision(left.dtype),
        CHUNK=chunk_size, BLOCK_N=_whole_block(shapes["dstate"]),
    )  # fmt: skip
    return out


def _state_passing(states, cum, seq_idx, initial_states, shapes, chunk_size):
    """Forward step 4: turns each chunk's contribution in ``states`` into the state entering it, in
    place; returns the final states (batch, heads, P, N) float32."""
    batch, heads, head_dim, dstate = states.shape[0], states.shape[2], shapes["head_dim"], shapes["dstate"]
    final = torch.empty(batch, heads, head_dim, dstate, device=states.device, dtype=torch.float32)
    state_size = head_dim * dstate
    _state_passing_kernel[(batch * heads, triton.cdiv(state_size, STATE_BLOCK))](
        states, cum, cum if seq_idx is None else seq_idx, states if initial_states is None else initial_states,
        final, shapes["length"], heads, shapes["n_chunks"], state_size, HAS_INITIAL=initial_states is not None,
        HAS_SEQ_IDX=seq_idx is not None, CHUNK=chunk_size, BLOCK=STATE_BLOCK,
    )  # fmt: skip
    return final


def _chunk_scan(x, C, scores, D, z, dtp, cum, states, seq_idx, shapes, chunk_size, dout=None):
    """Forward step 5: the output; given ``dout`` (backward step 1), the pair ``dz`` and
    ``dout * silu(z)`` instead."""
    batch, heads = x.shape[0], x.shape[2]
    out = torch.empty_like(x)
    dz = None if dout is None else torch.empty_like(z)

    def grid(meta):
        tiles = triton.cdiv(chunk_size, meta["BLOCK_M"]) * triton.cdiv(shapes["head_dim"], meta["BLOCK_P"])
        return batch * heads, shapes["n_chunks"], tiles

    _chunk_scan_kernel[grid](
        x, C, scores, x if D is None else D, x if z is None else z, dtp, cum, states,
        cum if seq_idx is None else seq_idx, out, x if dout is None else dout, x if dz is None else dz, **shapes,
        HAS_D=D is not None, D_PER_CHANNEL=D is not None and D.dim() == 2, HAS_Z=z is not None,
        HAS_SEQ_IDX=seq_idx is not None, GATE_BACKWARD=dout is not None, DOT_PRECISION=dot_precision(x.dtype),
        CHUNK=chunk_size, BLOCK_INNER=INNER_BLOCK,
    )  # fmt: skip
    return out if dout is None else (dz, out)


def _state_passing_bwd(dstates, states, cum, seq_idx, dfinal, shapes, chunk_size):
    """Backward step 3: turns ``dstates`` into the gradients of the chunks' contributions, in
    place; returns the initial states' gradient and each chunk's total decay's, float32."""
    batch, heads, head_dim, dstate = states.shape[0], states.shape[2], shapes["head_dim"], shapes["dstate"]
    state_size = head_dim * dstate
    state_blocks = triton.cdiv(state_size, STATE_BLOCK)
    dinitial = torch.empty(batch, heads, head_dim, dstate, device=states.device, dtype=torch.float32)
    ddecay = torch.empty(batch, heads, shapes["n_chunks"], state_blocks, device=states.device, dtype=torch.float32)
    _state_passing_bwd_kernel[(batch * heads, state_blocks)](
        dstates, states, cum, dfinal_ptr=dfinal.contiguous(), dinitial_ptr=dinitial, ddecay_ptr=ddecay,
        length=shapes["length"], heads=heads, n_chunks=shapes["n_chunks"], state_size=state_size,
        **_sequences(seq_idx, cum), CHUNK=chunk_size, BLOCK=STATE_BLOCK,
    )  # fmt: skip
    return dinitial, ddecay.sum(-1)


class ChunkScanGrads(NamedTuple):
    """Backward step 4's results: the input gradients and the pieces of the cumulative sums' gradient."""

    dx: torch.Tensor
    dB: torch.Tensor
    dC: torch.Tensor
    dcum_source: torch.Tensor  # the source steps' side
    dcum_output: torch.Tensor  # the output steps' side
    dend: torch.Tensor  # what each chunk's end receives
    ddtp: torch.Tensor  # dt''s share through u = dt' x


def _chunk_scan_bwd(x, B, C, scores, D, dy, dtp, cum, states, dstates, seq_idx, shapes, chunk_size):
    """Backward step 4: dx and dB (rows are source steps), then dC (rows are output steps)."""
    grads = ChunkScanGrads(torch.empty_like(x), torch.empty_like(B), torch.empty_like(C),
                           *(torch.empty_like(cum) for _ in range(4)))  # fmt: skip

    def grid(meta):
        return x.shape[0] * shapes["groups"], shapes["n_chunks"], triton.cdiv(chunk_size, meta["BLOCK_M"])

    common = dict(
        **shapes, **_sequences(seq_idx, cum), DOT_PRECISION=dot_precision(x.dtype), CHUNK=chunk_size,
        BLOCK_INNER=INNER_BLOCK, BLOCK_P=_whole_block(shapes["head_dim"]), BLOCK_N=_whole_block(shapes["dstate"]),
    )  # fmt: skip
    _chunk_scan_bwd_dx_kernel[grid](
        x, B, C, scores, x if D is None else D, dy, dtp, cum, dstates, dx_ptr=grads.dx, dB_ptr=grads.dB,
        dcum_ptr=grads.dcum_source, dend_ptr=grads.dend, ddtp_ptr=grads.ddtp, HAS_D=D is not None,
        D_PER_CHANNEL=D is not None and D.dim() == 2, **common,
    )  # fmt: skip
    _chunk_scan_bwd_dc_kernel[grid](
        x, B, C, scores, dy, dtp, cum, states, dC_ptr=grads.dC, dcum_ptr=grads.dcum_output, **common,
    )  # fmt: skip
    return grads


def _chunk_cumsum_bwd(dt, A, dt_bias, dt_softplus, grads: ChunkScanGrads, ddecay, shapes, chunk_size):
    """Backward step 5: dt's gradient, and the per-(batch, chunk) partials of A's and dt_bias's, float32."""
    batch, length, heads = dt.shape
    n_chunks = shapes["n_chunks"]
    ddt = torch.empty_like(dt)
    dA = torch.empty(batch, n_chunks, heads, device=dt.device, dtype=torch.float32)
    dbias = torch.empty_like(dA)
    _chunk_cumsum_bwd_kernel[(batch, n_chunks, triton.cdiv(heads, HEAD_BLOCK))](
        dt, A, dt if dt_bias is None else dt_bias, grads.dcum_source, grads.dcum_output, grads.dend, ddecay,
        grads.ddtp, ddt, dA, dbias, length, heads, n_chunks, HAS_BIAS=dt_bias is not None, SOFTPLUS=dt_softplus,
        BLOCK_H=HEAD_BLOCK, CHUNK=chunk_size,
    )  # fmt: skip
    return ddt, dA, dbias


# ----------------------------------------------------------------------------------------------
# The forward and backward passes, autograd and the public function
# ----------------------------------------------------------------------------------------------


def _ssd_fwd(x, dt, A, B, C, D, z, dt_bias, initial_states, seq_idx, chunk_size, dt_softplus):
    """The forward's five steps on contiguous inputs: ``(y, final_states, saved)``, ``saved`` being
    dt', the cumulative sums and the entering states, which the backward reuses."""
    shapes = _shape_args(x, B, triton.cdiv(x.shape[1], chunk_size))
    dtp, cum = _chunk_sums(dt, A, dt_bias, dt_softplus, shapes["n_chunks"], chunk_size)
    scores = _chunk_scores(B, C, shapes, chunk_size)
    states = _chunk_state(x, B, dtp, cum, seq_idx, shapes, chunk_size, from_end=True)
    final = _state_passing(states, cum, seq_idx, initial_states, shapes, chunk_size)
    y = _chunk_scan(x, C, scores, D, z, dtp, cum, states, seq_idx, shapes, chunk_size)
    return y, final, (dtp, cum, states)


def _ssd_bwd(dout, dfinal, x, dt, A, B, C, D, z, dt_bias, initial_states, seq_idx, dtp, cum, states, chunk_size,
             dt_softplus):  # fmt: skip
    """The backward's five steps: the gradient of every input, None for those not given."""
    shapes = _shape_args(x, B, dtp.shape[2])
    scores = _chunk_scores(B, C, shapes, chunk_size)  # recomputed, not saved
    if z is None:
        dz, dy = None, dout.to(x.dtype)
    else:
        dz, dy = _chunk_scan(x, C, scores, D, z, dtp, cum, states, seq_idx, shapes, chunk_size, dout=dout)
    dstates = _chunk_state(dy, C, dtp, cum, seq_idx, shapes, chunk_size, from_end=False)
    dinitial, ddecay = _state_passing_bwd(dstates, states, cum, seq_idx, dfinal, shapes, chunk_size)
    grads = _chunk_scan_bwd(x, B, C, scores, D, dy, dtp, cum, states, dstates, seq_idx, shapes, chunk_size)
    ddt, dA, dbias = _chunk_cumsum_bwd(dt, A, dt_bias, dt_softplus, grads, ddecay, shapes, chunk_size)
    dD = None
    if D is not None:  # an elementwise product summed over batch and steps: left to torch
        dD = torch.einsum("blhp,blhp->hp" if D.dim() == 2 else "blhp,blhp->h", dy.float(), x.float()).to(D.dtype)
    return (
        grads.dx,
        ddt,
        dA.sum(dim=(0, 1)).to(A.dtype),
        grads.dB,
        grads.dC,
        dD,
        dz,
        None if dt_bias is None else dbias.sum(dim=(0, 1)).to(dt_bias.dtype),
        None if initial_states is None else dinitial.to(initial_states.dtype),
    )


class SSDScanFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, z, dt_bias, initial_states, seq_idx, chunk_size, dt_softplus):
        inputs = [None if tensor is None else tensor.contiguous()
                  for tensor in (x, dt, A, B, C, D, z, dt_bias, initial_states, seq_idx)]  # fmt: skip
        y, final, saved = _ssd_fwd(*inputs, chunk_size, dt_softplus)
        ctx.save_for_backward(*inputs, *saved)
        ctx.chunk_size, ctx.dt_softplus = chunk_size, dt_softplus
        return y, final

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout, dfinal):
        grads = _ssd_bwd(dout.contiguous(), dfinal, *ctx.saved_tensors, ctx.chunk_size, ctx.dt_softplus)
        return *grads, None, None, None


def check_ssd_inputs(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None) -> None:
    """Raise a TypeError or ValueError naming the first argument that does not fit."""
    optional = {"D": D, "z": z, "dt_bias": dt_bias, "initial_states": initial_states}
    named = {"x": x, "dt": dt, "A": A, "B": B, "C": C, **{name: t for name, t in optional.items() if t is not None}}
    for name, tensor in named.items():
        check_dtype(name, tensor)
    if x.dim() != 4:
        raise ValueError(f"x: expected shape (batch, L, heads, P), got {tuple(x.shape)}")
    batch, length, heads, head_dim = x.shape
    if length < 1:
        raise ValueError("x: expected a sequence of at least one step, got L = 0")
    if not 1 <= head_dim <= MAX_HEAD_DIM:
        raise ValueError(f"x: the head dim P must be between 1 and {MAX_HEAD_DIM}, got {head_dim}")
    if B.dim() != 4:
        raise ValueError(f"B: expected shape (batch, L, G, N), got {tuple(B.shape)}")
    groups, dstate = B.shape[2], B.shape[3]
    if groups < 1 or heads % groups:
        raise ValueError(
            f"B: the number of heads ({heads}) must be divisible by the number of groups G, got G = {groups}"
        )
    if not 1 <= dstate <= MAX_STATE:
        raise ValueError(f"B: the state size N must be between 1 and {MAX_STATE}, got {dstate}")
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int)
        or chunk_size < MIN_CHUNK
        or chunk_size & (chunk_size - 1)
    ):
        raise ValueError(f"chunk_size: expected a power of two >= {MIN_CHUNK}, got {chunk_size!r}")
    shapes = {
        "x": (batch, length, heads, head_dim),
        "dt": (batch, length, heads),
        "A": (heads,),
        "B": (batch, length, groups, dstate),
        "C": (batch, length, groups, dstate),
        "D": (heads,) if D is not None and D.dim() == 1 else (heads, head_dim),
        "z": (batch, length, heads, head_dim),
        "dt_bias": (heads,),
        "initial_states": (batch, heads, head_dim, dstate),
    }
    for name, tensor in named.items():
        if tuple(tensor.shape) != shapes[name]:
            expected = f"({heads},) or {(heads, head_dim)}" if name == "D" else shapes[name]
            raise ValueError(f"{name}: expected shape {expected}, got {tuple(tensor.shape)}")
        check_device(name, tensor, "x", x)
    check_kernel_device("x", x)


def ssd_scan(
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
    """Mamba-2's SSD scan (see the module docstring): ``y``, or ``(y, final_states)``."""
    check_ssd_inputs(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states)
    seq_idx = packed_sequence_ids(x, seq_idx, cu_seqlens)
    y, final = SSDScanFunction.apply(
        x, dt, A, B, C, D, z, dt_bias, initial_states, seq_idx, chunk_size, bool(dt_softplus)
    )
    return (y, final) if return_final_states else y
