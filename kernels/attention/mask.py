"""Which keys each query sees in sliding-window attention with sink tokens.

Query ``i`` sits at key position ``pos(i) = i + Sk - Sq`` (bottom-right alignment).
``window`` is an int ``W`` (the pair ``(W, W)``) or a pair ``(left, right)`` with
FlashAttention's ``window_size`` meaning: key ``j`` is in the band when
``pos(i) - left <= j <= pos(i) + right``, ``-1`` leaving that side unbounded. Key ``j``
is visible when it is in the band, ``j < sinks`` (the first keys, such as [CLS]) or
``j >= Sk - end_sinks`` (the last keys, such as a trailing [SEP]), and, when causal,
only if ``j <= pos(i)`` (so causal turns ``right`` into 0, as FlashAttention does, and an
end sink is seen only from its own position on). One definition, ``visible``, composed
by the dense, FlexAttention and packed builders below and shared by the reference, the
tests and the peers (SDPA's boolean mask, FlexAttention's mask_mod, per sequence for
packed batches); the kernels' ``_visible`` mirrors it.
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


def visible(position, key, kv_len, left: int, right: int, sinks: int, end_sinks: int, causal: bool):
    """The predicate itself, on broadcasting tensors: True where the query at key ``position`` sees ``key``
    of a sequence of ``kv_len`` keys (a tensor when it differs per pair). ``left`` and ``right`` are finite
    (``effective_window``)."""
    seen = ((key >= position - left) & (key <= position + right)) | (key < sinks) | (key >= kv_len - end_sinks)
    return seen & (key <= position) if causal else seen


def sliding_window_mask(
    q_len: int, kv_len: int, window, sinks: int = 0, causal: bool = True, device=None, end_sinks: int = 0
) -> torch.Tensor:
    """Boolean ``(q_len, kv_len)`` mask, True where the query sees the key."""
    positions = torch.arange(q_len, device=device)[:, None] + (kv_len - q_len)
    keys = torch.arange(kv_len, device=device)[None, :]
    return visible(positions, keys, kv_len, *effective_window(window, causal, q_len, kv_len), sinks, end_sinks, causal)


def sliding_window_mask_mod(q_len: int, kv_len: int, window, sinks: int = 0, causal: bool = True, end_sinks: int = 0):
    """The same mask as a FlexAttention ``mask_mod(batch, head, q_idx, kv_idx)``, tensor ops only."""
    offset = kv_len - q_len
    left, right = effective_window(window, causal, q_len, kv_len)

    def mask_mod(batch, head, q_idx, kv_idx):
        return visible(q_idx + offset, kv_idx, kv_len, left, right, sinks, end_sinks, causal)

    return mask_mod


def varlen_mask_mod(
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    window,
    sinks: int = 0,
    causal: bool = True,
    end_sinks: int = 0,
):
    """The mask of packed sequences (FlexAttention's document masking), over indices into the packed
    ``(total_q, total_k)`` scores: a query sees keys of its own sequence only, under that sequence's
    mask (positions, alignment, sinks and end sinks per sequence)."""
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
        document = k_doc[kv_idx]
        seen = visible(q_position[q_idx], k_index[kv_idx], k_lens[document], left, right, sinks, end_sinks, causal)
        return seen & (q_doc[q_idx] == document)

    return mask_mod


def varlen_mask(
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    window,
    sinks: int = 0,
    causal: bool = True,
    end_sinks: int = 0,
) -> torch.Tensor:
    """Boolean ``(total_q, total_k)`` mask of packed sequences (block-diagonal), from ``varlen_mask_mod``."""
    mod = varlen_mask_mod(cu_seqlens_q, cu_seqlens_k, window, sinks, causal, end_sinks)
    q_idx = torch.arange(int(cu_seqlens_q[-1]), device=cu_seqlens_q.device)[:, None]
    kv_idx = torch.arange(int(cu_seqlens_k[-1]), device=cu_seqlens_k.device)[None, :]
    return mod(0, 0, q_idx, kv_idx)


def visible_pairs(q_len: int, kv_len: int, window, sinks: int = 0, causal: bool = True, end_sinks: int = 0) -> int:
    """Number of visible (query, key) pairs, in O(q_len) memory: the useful work of the kernel.

    Each query sees the union of three key intervals (sinks, band, end sinks), each cut at its
    position when causal; the union's size by inclusion-exclusion over their intersections."""
    left, right = effective_window(window, causal, q_len, kv_len)
    positions = torch.arange(q_len, dtype=torch.int64) + (kv_len - q_len)
    stop = (positions + 1).clamp(0, kv_len) if causal else torch.full_like(positions, kv_len)  # past the last key seen
    zeros = torch.zeros_like(positions)
    intervals = [
        (zeros, torch.minimum(zeros + sinks, stop)),
        ((positions - left).clamp(0, kv_len), torch.minimum((positions + right + 1).clamp(0, kv_len), stop)),
        (zeros + max(kv_len - end_sinks, 0), stop),
    ]

    def size(chosen):
        low = torch.stack([intervals[index][0] for index in chosen]).amax(0)
        high = torch.stack([intervals[index][1] for index in chosen]).amin(0)
        return (high - low).clamp(min=0)

    union = size([0]) + size([1]) + size([2]) - size([0, 1]) - size([0, 2]) - size([1, 2]) + size([0, 1, 2])
    return int(union.sum())
