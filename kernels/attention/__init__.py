"""Sliding-window attention with sink tokens: the Triton kernel, its reference and the shared mask."""

from menagerie.kernels.attention.mask import (
    sliding_window_mask,
    sliding_window_mask_mod,
    varlen_mask,
    varlen_mask_mod,
    visible_pairs,
    window_bounds,
)
from menagerie.kernels.attention.reference import (
    sliding_window_attention_reference,
    sliding_window_attention_varlen_reference,
)
from menagerie.kernels.attention.sliding_window import sliding_window_attention, sliding_window_attention_varlen

__all__ = [
    "sliding_window_attention",
    "sliding_window_attention_reference",
    "sliding_window_attention_varlen",
    "sliding_window_attention_varlen_reference",
    "sliding_window_mask",
    "sliding_window_mask_mod",
    "varlen_mask",
    "varlen_mask_mod",
    "visible_pairs",
    "window_bounds",
]
