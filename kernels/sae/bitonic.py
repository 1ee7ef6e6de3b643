"""Bitonic sorting networks on a ``(ROWS, L)`` tile, along its rows (``L`` a power of two).

Built from reshape / split / join and element-wise max and min, so it is cheap under
Triton's CPU interpreter (whose ``tl.sort``/``tl.topk`` reduce element by element in
Python). The encoder uses it only there: compiled for a GPU, its stages cost minutes in
Triton's layout passes (``menagerie compile``), so GPUs merge with ``tl.topk``.

- ``sort_rows(x, ..., DESCENDING)``: a full bitonic sort, ``log L (log L + 1) / 2`` stages.
- ``merge_top(best, tile, ...)``: the ``L`` largest of ``best`` (sorted descending) and
  ``tile`` (any order), sorted descending. It sorts the tile ascending, keeps the
  element-wise maximum of the two (the classic half-cleaner: that is the top ``L`` of
  the union, as a bitonic sequence) and merges it in ``log L`` stages.
"""

import triton
import triton.language as tl


@triton.jit
def _compare_swap(
    x,
    ROWS: tl.constexpr,
    L: tl.constexpr,
    BLOCK_LOG: tl.constexpr,
    STRIDE_LOG: tl.constexpr,
    DESCENDING: tl.constexpr,
):
    """Orders each pair ``(i, i + 2**STRIDE_LOG)``; blocks of ``2**BLOCK_LOG`` alternate direction,
    and the first block goes the ``DESCENDING`` way."""
    stride: tl.constexpr = 1 << STRIDE_LOG
    groups: tl.constexpr = L // (2 * stride)
    left, right = tl.split(tl.permute(tl.reshape(x, (ROWS, groups, 2, stride)), (0, 1, 3, 2)))
    first_block = (((tl.arange(0, groups) * 2 * stride) >> BLOCK_LOG) % 2 == 0)[None, :, None]
    descending = first_block if DESCENDING else ~first_block
    high, low = tl.maximum(left, right), tl.minimum(left, right)
    pairs = tl.join(tl.where(descending, high, low), tl.where(descending, low, high))
    return tl.reshape(tl.permute(pairs, (0, 1, 3, 2)), (ROWS, L))


@triton.jit
def sort_rows(x, ROWS: tl.constexpr, L: tl.constexpr, LOG_L: tl.constexpr, DESCENDING: tl.constexpr):
    for block_log in tl.static_range(1, LOG_L + 1):
        for step in tl.static_range(block_log):
            x = _compare_swap(x, ROWS, L, block_log, block_log - 1 - step, DESCENDING)
    return x


@triton.jit
def merge_top(best, tile, ROWS: tl.constexpr, L: tl.constexpr, LOG_L: tl.constexpr):
    top = tl.maximum(best, sort_rows(tile, ROWS, L, LOG_L, False))
    for step in tl.static_range(LOG_L):
        top = _compare_swap(top, ROWS, L, LOG_L, LOG_L - 1 - step, True)
    return top
