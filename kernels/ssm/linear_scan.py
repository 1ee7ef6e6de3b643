"""First-order linear recurrence ``x_t = a_t * x_{t-1} + b_t`` in Triton, with gradients.

gates ``a`` and tokens ``b`` are ``(B, C, T)``, fp32, fp16 or bf16; the state is
carried in float32 and the output has the inputs' dtype. One program owns a block
of channels and walks the sequence in chunks: inside a chunk the recurrence is a
parallel associative scan over pairs ``(a, b)`` composed as
``(a1, b1) then (a2, b2) = (a1*a2, b1*a2 + b2)``, and the chunk's aggregate carries
the state to the next chunk. Each element is read and written once: the kernel is
memory-bound by design.

Backward: with ``g = dL/dx``, the gradient reaching ``x_t`` is
``h_t = g_t + a_{t+1} * h_{t+1}``, the same recurrence run in reverse; then
``dL/db_t = h_t`` and ``dL/da_t = h_t * x_{t-1}``.
"""

from collections.abc import Callable
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from menagerie.kernels.validate import check_dtype

BLOCK_C = 4
BLOCK_T = 128


@triton.jit
def _compose(a_first, b_first, a_then, b_then):
    return a_first * a_then, b_first * a_then + b_then


@triton.jit
def _linear_scan_fwd_kernel(a_ptr, b_ptr, x_ptr, channels, length, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    state = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for start in range(0, length, BLOCK_T):
        steps = start + tl.arange(0, BLOCK_T)
        inside = (rows[:, None] < channels) & (steps[None, :] < length)
        offsets = rows[:, None] * length + steps[None, :]
        # Padding is the identity step (a=1, b=0), so it changes neither the scan nor the aggregate.
        a = tl.load(a_ptr + offsets, mask=inside, other=1.0).to(tl.float32)
        b = tl.load(b_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
        a_prefix, b_prefix = tl.associative_scan((a, b), axis=1, combine_fn=_compose)
        tl.store(x_ptr + offsets, (a_prefix * state[:, None] + b_prefix).to(x_ptr.dtype.element_ty), mask=inside)
        a_chunk, b_chunk = tl.reduce((a, b), axis=1, combine_fn=_compose)
        state = a_chunk * state + b_chunk


@triton.jit
def _linear_scan_bwd_kernel(
    a_ptr,
    x_ptr,
    g_ptr,
    da_ptr,
    db_ptr,
    channels,
    length,
    BLOCK_C: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    carry = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for end in range(length, 0, -BLOCK_T):
        # Walk the chunk backwards: position j of the tile is step end - 1 - j.
        steps = end - 1 - tl.arange(0, BLOCK_T)
        inside = (rows[:, None] < channels) & (steps[None, :] >= 0)
        offsets = rows[:, None] * length + steps[None, :]
        g = tl.load(g_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
        # h_t = g_t + a_{t+1} h_{t+1}: the gate of the *next* step (none after the last).
        next_inside = inside & (steps[None, :] + 1 < length)
        a_next = tl.load(a_ptr + offsets + 1, mask=next_inside, other=0.0).to(tl.float32)
        a_next = tl.where(inside, a_next, 1.0)
        a_prefix, h_prefix = tl.associative_scan((a_next, g), axis=1, combine_fn=_compose)
        h = a_prefix * carry[:, None] + h_prefix
        previous_inside = inside & (steps[None, :] >= 1)
        x_previous = tl.load(x_ptr + offsets - 1, mask=previous_inside, other=0.0).to(tl.float32)
        tl.store(db_ptr + offsets, h.to(db_ptr.dtype.element_ty), mask=inside)
        tl.store(da_ptr + offsets, (h * x_previous).to(da_ptr.dtype.element_ty), mask=inside)
        a_chunk, h_chunk = tl.reduce((a_next, g), axis=1, combine_fn=_compose)
        carry = a_chunk * carry + h_chunk


def check_scan_inputs(gates: torch.Tensor, tokens: torch.Tensor) -> None:
    for name, tensor in (("gates", gates), ("tokens", tokens)):
        check_dtype(name, tensor)
        if tensor.dim() != 3:
            raise ValueError(f"{name}: expected shape (B, C, T), got {tuple(tensor.shape)}")
    if gates.shape != tokens.shape:
        raise ValueError(f"gates: shape {tuple(gates.shape)} must equal tokens' {tuple(tokens.shape)}")
    if gates.dtype != tokens.dtype:
        raise TypeError(f"gates: dtype {gates.dtype} must equal tokens' {tokens.dtype}")
    if gates.device != tokens.device:
        raise ValueError(f"gates: device {gates.device} must equal tokens' {tokens.device}")


class ScanLaunchers(NamedTuple):
    """How one implementation runs the scan on contiguous ``(rows, length)`` data.

    ``forward(gates, tokens, states, rows, length)`` writes the states;
    ``backward(gates, states, grad_states, grad_gates, grad_tokens, rows, length)``
    writes both gradients. The Triton and the CUDA C scans share ``LinearScanFunction``
    and differ only here.
    """

    forward: Callable[..., None]
    backward: Callable[..., None]


def _triton_forward(gates, tokens, states, rows, length):
    _linear_scan_fwd_kernel[(triton.cdiv(rows, BLOCK_C),)](
        gates, tokens, states, rows, length, BLOCK_C=BLOCK_C, BLOCK_T=BLOCK_T
    )


def _triton_backward(gates, states, grad_states, grad_gates, grad_tokens, rows, length):
    _linear_scan_bwd_kernel[(triton.cdiv(rows, BLOCK_C),)](
        gates, states, grad_states, grad_gates, grad_tokens, rows, length, BLOCK_C=BLOCK_C, BLOCK_T=BLOCK_T
    )


TRITON_LAUNCHERS = ScanLaunchers(_triton_forward, _triton_backward)


class LinearScanFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gates, tokens, launchers: ScanLaunchers):
        gates, tokens = gates.contiguous(), tokens.contiguous()
        batch, channels, length = tokens.shape
        states = torch.empty_like(tokens)
        if tokens.numel():
            launchers.forward(gates, tokens, states, batch * channels, length)
        ctx.save_for_backward(gates, states)
        ctx.launchers = launchers
        return states

    @staticmethod
    def backward(ctx, grad_states):
        gates, states = ctx.saved_tensors
        batch, channels, length = states.shape
        grad_gates, grad_tokens = torch.empty_like(gates), torch.empty_like(states)
        if states.numel():
            ctx.launchers.backward(
                gates, states, grad_states.contiguous(), grad_gates, grad_tokens, batch * channels, length
            )
        return grad_gates, grad_tokens, None


def linear_scan(gates: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``x_t = gates_t * x_{t-1} + tokens_t`` over the last axis of ``(B, C, T)``, differentiable."""
    check_scan_inputs(gates, tokens)
    return LinearScanFunction.apply(gates, tokens, TRITON_LAUNCHERS)
