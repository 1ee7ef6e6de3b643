"""Which keys each query sees in sliding-window attention with sink tokens.

Query ``i`` sits at key position ``pos(i) = i + Sk - Sq`` (bottom-right alignment).
Key ``j`` is visible when ``|pos(i) - j| <= window`` or ``j < sinks``, and, when
causal, only if ``j <= pos(i)``. One definition, shared by the reference, the
tests and the peers (SDPA's boolean mask, FlexAttention's mask_mod).
"""

from __future__ import annotations

import torch


def sliding_window_mask(q_len: int, kv_len: int, window: int, sinks: int = 0, causal: bool = True,
                        device=None) -> torch.Tensor:
    """Boolean ``(q_len, kv_len)`` mask, True where the query sees the key."""
    positions = torch.arange(q_len, device=device)[:, None] + (kv_len - q_len)
    keys = torch.arange(kv_len, device=device)[None, :]
    visible = ((positions - keys).abs() <= window) | (keys < sinks)
    return visible & (keys <= positions) if causal else visible


def sliding_window_mask_mod(q_len: int, kv_len: int, window: int, sinks: int = 0, causal: bool = True):
    """The same mask as a FlexAttention ``mask_mod(batch, head, q_idx, kv_idx)``, tensor ops only."""
    offset = kv_len - q_len

    def mask_mod(batch, head, q_idx, kv_idx):
        position = q_idx + offset
        visible = ((position - kv_idx).abs() <= window) | (kv_idx < sinks)
        return visible & (kv_idx <= position) if causal else visible

    return mask_mod


def visible_pairs(q_len: int, kv_len: int, window: int, sinks: int = 0, causal: bool = True) -> int:
    """Number of visible (query, key) pairs, in O(q_len) memory: the useful work of the kernel."""
    positions = torch.arange(q_len, dtype=torch.int64) + (kv_len - q_len)
    high = positions if causal else positions + window  # last visible key, before clipping
    band_low = (positions - window).clamp(0, kv_len)
    band_high = (high + 1).clamp(0, kv_len)
    band = (band_high - band_low).clamp(min=0)
    # Sinks outside the band: keys [0, min(sinks, band_low)) before it, and (only without
    # causality) keys [band_high, sinks) after it; causal sinks stop at the query's position.
    sinks = min(sinks, kv_len)
    before = torch.minimum(torch.full_like(band_low, sinks), band_low)
    if causal:
        before = torch.minimum(before, (positions + 1).clamp(min=0))
        return int((band + before.clamp(min=0)).sum())
    after = (sinks - band_high).clamp(min=0)
    return int((band + before + after).sum())
