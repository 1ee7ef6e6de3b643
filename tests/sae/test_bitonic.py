import pytest
import torch
import triton
import triton.language as tl

from menagerie.kernels.sae.bitonic import merge_top, sort_rows
from tests.sae.helpers import DEVICE


@triton.jit
def _sort_and_merge(
    best_ptr, tile_ptr, sorted_ptr, merged_ptr, ROWS: tl.constexpr, L: tl.constexpr, LOG_L: tl.constexpr
):
    offsets = tl.arange(0, ROWS)[:, None] * L + tl.arange(0, L)[None, :]
    best, tile = tl.load(best_ptr + offsets), tl.load(tile_ptr + offsets)
    tl.store(sorted_ptr + offsets, sort_rows(tile, ROWS, L, LOG_L, True))
    tl.store(merged_ptr + offsets, merge_top(best, tile, ROWS, L, LOG_L))


@pytest.mark.parametrize("length", [2, 16, 128])
def test_sort_and_merge_match_torch(length):
    generator = torch.Generator().manual_seed(length)
    rows = 4
    # Few distinct values, so equal keys (which must survive as duplicates) are common.
    best = torch.randint(-50, 50, (rows, length), generator=generator).sort(dim=1, descending=True).values
    tile = torch.randint(-50, 50, (rows, length), generator=generator)
    best, tile = best.to(DEVICE), tile.to(DEVICE)
    sorted_out, merged = torch.empty_like(tile), torch.empty_like(tile)
    _sort_and_merge[(1,)](best, tile, sorted_out, merged, rows, length, length.bit_length() - 1)
    assert torch.equal(sorted_out, tile.sort(dim=1, descending=True).values)
    assert torch.equal(merged, torch.cat([best, tile], dim=1).sort(dim=1, descending=True).values[:, :length])
