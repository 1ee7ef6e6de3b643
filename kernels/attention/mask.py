"""Which keys each query sees in sliding-window attention with sink tokens.

Query ``i`` sits at key position ``pos(i) = i + Sk - Sq`` (bottom-right alignment).
``window`` is an int ``W`` (the pair ``(W, W)``) or a pair ``(left, right)`` with
FlashAttention's ``window_size`` meaning: key ``j`` is in the band when
``pos(i) - left <= j <= pos(i) + right``, ``-1`` leaving that side unbounded. Key ``j``
is visible when it is in the band or ``j < sinks``, and, when causal, only if
``j <= pos(i)`` (so causal turns ``right`` into 0, as FlashAttention does). One
definition, shared by the reference, the tests and the peers (SDPA's boolean mask,
FlexAttention's mask_mod, per sequence for packed batches).
"""

from __future__ import annotations

import operator

import torch


def window_bounds(window) -> tuple[int, int]:
    """``(left, right)`` of an int or a pair, each >= -1 (-1: unbounded); raises naming ``window``."""
    if isinstance(window, (tuple, list)):
        if len(window) != 2:
            raise ValueError(f"window: expected an integer or a (left, right) pair, got {window!r}")
        left, right = (_window_side(side, window) for side in window)
    else:
        left = right = _window_side(window, window)
    return left, right


def _window_side(side, window) -> int:
    if isinstance(side, bool):
        raise TypeError(f"window: expected integers, got {window!r}")
    try:
        side = operator.index(side)
    except TypeError:
        raise TypeError(f"window: expected an integer or a (left, right) pair of integers, got {window!r}") from None
    if side < -1:
        raise ValueError(f"window: expected integers >= -1 (-1: unbounded), got {window!r}")
    return side


def effective_window(window, causal: bool, q_len: int, kv_len: int) -> tuple[int, int]:
    """Finite ``(left, right)`` with the same mask: -1 becomes ``Sq + Sk`` (beyond every
    ``|pos(i) - j|``), and causal sets ``right`` to 0."""
    unbounded = q_len + kv_len
    left, right = (unbounded if side < 0 else min(side, unbounded) for side in window_bounds(window))
    return left, 0 if causal else right


def sliding_window_mask(q_len: int, kv_len: int, window, sinks: int = 0, causal: bool = True,
                        device=None) -> torch.Tensor:
    """Boolean ``(q_len, kv_len)`` mask, True where the query sees the key."""
    left, right = effective_window(window, causal, q_len, kv_len)
    positions = torch.arange(q_len, device=device)[:, None] + (kv_len - q_len)
    keys = torch.arange(kv_len, device=device)[None, :]
    visible = ((keys >= positions - left) & (keys <= positions + right)) | (keys < sinks)
    return visible & (keys <= positions) if causal else visible


def sliding_window_mask_mod(q_len: int, kv_len: int, window, sinks: int = 0, causal: bool = True):
    """The same mask as a FlexAttention ``mask_mod(batch, head, q_idx, kv_idx)``, tensor ops only."""
    offset = kv_len - q_len
    left, right = effective_window(window, causal, q_len, kv_len)

    def mask_mod(batch, head, q_idx, kv_idx):
        position = q_idx + offset
        visible = ((kv_idx >= position - left) & (kv_idx <= position + right)) | (kv_idx < sinks)
        return visible & (kv_idx <= position) if causal else visible

    return mask_mod


def varlen_mask_mod(cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor, window, sinks: int = 0,
                    causal: bool = True):
    """The mask of packed sequences (FlexAttention's document masking), over indices into the packed
    ``(total_q, total_k)`` scores: a query sees keys of its own sequence only, under that sequence's
    mask (positions, alignment and sinks per sequence)."""
    cu_q, cu_k = cu_seqlens_q.long(), cu_seqlens_k.long()
    q_lens, k_lens = cu_q.diff(), cu_k.diff()
    longest_q, longest_k = (int(lens.max()) if lens.numel() else 0 for lens in (q_lens, k_lens))
    left, right = effective_window(window, causal, longest_q, longest_k)
    q_rows, k_rows = torch.arange(int(cu_q[-1]), device=cu_q.device), torch.arange(int(cu_k[-1]), device=cu_k.device)
    q_doc = torch.searchsorted(cu_q[1:], q_rows, right=True)  # the sequence each packed row belongs to
    k_doc = torch.searchsorted(cu_k[1:], k_rows, right=True)
    q_position = q_rows - cu_q[q_doc] + (k_lens - q_lens)[q_doc]  # bottom-right, within the sequence
    k_index = k_rows - cu_k[k_doc]

    def mask_mod(batch, head, q_idx, kv_idx):
        position, key = q_position[q_idx], k_index[kv_idx]
        visible = ((key >= position - left) & (key <= position + right)) | (key < sinks)
        if causal:
            visible = visible & (key <= position)
        return visible & (q_doc[q_idx] == k_doc[kv_idx])

    return mask_mod


def varlen_mask(cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor, window, sinks: int = 0,
                causal: bool = True) -> torch.Tensor:
    """Boolean ``(total_q, total_k)`` mask of packed sequences (block-diagonal), from ``varlen_mask_mod``."""
    mod = varlen_mask_mod(cu_seqlens_q, cu_seqlens_k, window, sinks, causal)
    q_idx = torch.arange(int(cu_seqlens_q[-1]), device=cu_seqlens_q.device)[:, None]
    kv_idx = torch.arange(int(cu_seqlens_k[-1]), device=cu_seqlens_k.device)[None, :]
    return mod(0, 0, q_idx, kv_idx)


def visible_pairs(q_len: int, kv_len: int, window, sinks: int = 0, causal: bool = True) -> int:
    """Number of visible (query, key) pairs, in O(q_len) memory: the useful work of the kernel."""
    left, right = effective_window(window, causal, q_len, kv_len)
    positions = torch.arange(q_len, dtype=torch.int64) + (kv_len - q_len)
    band_low = (positions - left).clamp(0, kv_len)
    band_high = (positions + right + 1).clamp(0, kv_len)  # one past the last key of the band
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
