"""Sliding-window attention with sink tokens: the Triton kernel, its reference and the shared mask."""

from kernels.attention.mask import (sliding_window_mask, sliding_window_mask_mod, varlen_mask, varlen_mask_mod,
                                    visible_pairs, window_bounds)
from kernels.attention.reference import (sliding_window_attention_reference,
                                         sliding_window_attention_varlen_reference)
from kernels.attention.sliding_window import sliding_window_attention, sliding_window_attention_varlen

__all__ = ["sliding_window_attention", "sliding_window_attention_reference", "sliding_window_attention_varlen",
           "sliding_window_attention_varlen_reference", "sliding_window_mask", "sliding_window_mask_mod",
           "varlen_mask", "varlen_mask_mod", "visible_pairs", "window_bounds"]
