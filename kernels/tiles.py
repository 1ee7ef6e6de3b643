"""One way to write a tiling for ``triton.autotune``, shared by every kernel family.

``tiling(BLOCK_M=64, BLOCK_K=32, warps=4, stages=2)`` is the ``triton.Config`` that launches
with those block sizes (the kernel's constexpr names), ``num_warps=4`` and ``num_stages=2``.
Keywords only, so that no table depends on an argument order.
"""

import triton


def tiling(*, warps: int, stages: int, **blocks: int) -> triton.Config:
    return triton.Config(blocks, num_warps=warps, num_stages=stages)
