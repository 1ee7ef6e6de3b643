"""Plain-PyTorch references for the linear recurrence ``x_t = a_t x_{t-1} + b_t``.

``linear_scan_sequential`` is the definition, one step at a time (use it in float64
for tests). ``linear_scan_reference`` computes the same recurrence with a
Hillis-Steele doubling scan: log2(T) rounds of whole-tensor operations and no
division, so it is stable and fast enough to be the benchmark's reference at GPU
sizes.
"""

import torch


def linear_scan_sequential(gates: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``x_t = gates_t * x_{t-1} + tokens_t`` over the last axis, ``x_{-1} = 0``."""
    state = torch.zeros_like(tokens[..., 0])
    outputs = []
    for t in range(tokens.shape[-1]):
        state = gates[..., t] * state + tokens[..., t]
        outputs.append(state)
    return torch.stack(outputs, dim=-1) if outputs else tokens.clone()


def linear_scan_reference(gates: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The same recurrence as a doubling scan, accumulated in float32 (or float64 inputs' dtype)."""
    compute = torch.float64 if tokens.dtype == torch.float64 else torch.float32
    a, x = gates.to(compute), tokens.to(compute)
    length, offset = tokens.shape[-1], 1
    while offset < length:
        # After this round each position holds the composition of the last 2*offset steps.
        x = torch.cat([x[..., :offset], x[..., offset:] + a[..., offset:] * x[..., :-offset]], dim=-1)
        a = torch.cat([a[..., :offset], a[..., offset:] * a[..., :-offset]], dim=-1)
        offset *= 2
    return x.to(tokens.dtype)
