import itertools

import pytest
import torch
import torch.nn.functional as F

from menagerie.kernels.attention import (
    sliding_window_mask,
    sliding_window_mask_mod,
    varlen_mask,
    visible_pairs,
    window_bounds,
)

# Asymmetric, one-sided unbounded, fully unbounded and degenerate windows, as FlashAttention's test grid.
PAIRS = [(3, 9), (-1, 8), (8, -1), (-1, -1), (0, 0), (0, 5), (5, 0), (2, 1)]


def local_mask(q_len, kv_len, left, right, sinks, causal):
    """FlashAttention's construct_local_mask semantics (causal forces right to 0, -1 is unbounded), plus
    sinks, written from the definition: True where query i sees key j."""
    right = 0 if causal else right
    position = torch.arange(q_len)[:, None] + kv_len - q_len
    key = torch.arange(kv_len)[None, :]
    hidden = torch.zeros(q_len, kv_len, dtype=torch.bool)
    if right >= 0:
        hidden |= key > position + right
    if left >= 0:
        hidden |= key < position - left
    sink = key < sinks
    if causal:
        sink = sink & (key <= position)
    return ~hidden | sink


def test_causal_window_shows_window_plus_one_keys():
    mask = sliding_window_mask(10, 10, window=3, sinks=0, causal=True)
    assert mask.sum(dim=1).tolist() == [1, 2, 3, 4, 4, 4, 4, 4, 4, 4]
    assert mask[6].nonzero().flatten().tolist() == [3, 4, 5, 6]


def test_non_causal_window_is_symmetric():
    mask = sliding_window_mask(6, 6, window=1, causal=False)
    assert torch.equal(mask, mask.T)
    assert mask[2].nonzero().flatten().tolist() == [1, 2, 3]


def test_sinks_are_visible_but_respect_causality():
    mask = sliding_window_mask(8, 8, window=1, sinks=2, causal=True)
    assert mask[7].nonzero().flatten().tolist() == [0, 1, 6, 7]
    assert mask[0].nonzero().flatten().tolist() == [0]  # key 1 is a sink but lies in query 0's future
    non_causal = sliding_window_mask(8, 8, window=1, sinks=3, causal=False)
    assert non_causal[0].nonzero().flatten().tolist() == [0, 1, 2]  # the sink after the band too


def test_bottom_right_alignment_and_empty_rows():
    # Fewer queries than keys: the last query sits at the last key.
    short = sliding_window_mask(2, 5, window=1, causal=True)
    assert short.tolist() == [[False, False, True, True, False], [False, False, False, True, True]]
    # More queries than keys: the first queries sit before key 0 and see nothing.
    long = sliding_window_mask(5, 2, window=1, causal=True)
    assert long.sum(dim=1).tolist() == [0, 0, 0, 1, 2]


def test_window_zero_and_sinks_beyond_the_keys():
    assert torch.equal(sliding_window_mask(5, 5, window=0, causal=True), torch.eye(5, dtype=torch.bool))
    assert torch.equal(sliding_window_mask(5, 5, window=0, causal=False), torch.eye(5, dtype=torch.bool))
    # More sinks than keys: every key is a sink, so causal is the full lower triangle.
    assert torch.equal(sliding_window_mask(6, 6, window=1, sinks=50), torch.ones(6, 6, dtype=torch.bool).tril())
    assert bool(sliding_window_mask(6, 6, window=1, sinks=50, causal=False).all())


def test_mask_mod_matches_the_mask():
    for q_len, kv_len, window, sinks, causal in [(7, 7, 2, 1, True), (5, 9, 1, 3, False), (9, 4, 0, 2, True)]:
        mod = sliding_window_mask_mod(q_len, kv_len, window, sinks, causal)
        q_idx, kv_idx = torch.arange(q_len)[:, None], torch.arange(kv_len)[None, :]
        assert torch.equal(mod(0, 0, q_idx, kv_idx), sliding_window_mask(q_len, kv_len, window, sinks, causal))


def test_visible_pairs_counts_the_mask():
    for q_len, kv_len, window, sinks, causal in itertools.product(
        [1, 5, 20, 37], [1, 9, 20, 37], [0, 1, 3, 100], [0, 1, 4, 30], [True, False]
    ):
        expected = int(sliding_window_mask(q_len, kv_len, window, sinks, causal).sum())
        assert visible_pairs(q_len, kv_len, window, sinks, causal) == expected


def test_visible_pairs_at_benchmark_scale_without_the_mask():
    # 32k x 32k would be a 1 GiB mask; the count uses O(length) memory.
    length, window, sinks = 32768, 4096, 4
    band = sum(min(i, window) + 1 for i in range(length))
    extra_sinks = sum(min(sinks, max(i - window, 0)) for i in range(length))
    assert visible_pairs(length, length, window, sinks, causal=True) == band + extra_sinks


def test_mask_mod_builds_a_flex_attention_block_mask():
    from torch.nn.attention.flex_attention import create_block_mask

    for q_len, kv_len, window, sinks, causal in [(100, 300, 7, 4, True), (300, 100, 20, 2, False)]:
        block_mask = create_block_mask(
            sliding_window_mask_mod(q_len, kv_len, window, sinks, causal),
            None,
            None,
            q_len,
            kv_len,
            device="cpu",
            BLOCK_SIZE=16,
        )
        mask = sliding_window_mask(q_len, kv_len, window, sinks, causal).float()
        padded = F.pad(mask, (0, -kv_len % 16, 0, -q_len % 16))
        needed = F.max_pool2d(padded[None], 16)[0] > 0  # 16x16 blocks holding a visible pair
        assert torch.equal(block_mask.to_dense()[0, 0].bool(), needed)


@pytest.mark.parametrize("causal", [True, False])
def test_window_pairs_match_flash_attention_local_mask(causal):
    for (q_len, kv_len), (left, right), sinks in itertools.product([(9, 9), (5, 12), (12, 5)], PAIRS, [0, 2, 20]):
        expected = local_mask(q_len, kv_len, left, right, sinks, causal)
        assert torch.equal(sliding_window_mask(q_len, kv_len, (left, right), sinks, causal), expected), (
            q_len,
            kv_len,
            left,
            right,
            sinks,
            causal,
        )
        q_idx, kv_idx = torch.arange(q_len)[:, None], torch.arange(kv_len)[None, :]
        mod = sliding_window_mask_mod(q_len, kv_len, (left, right), sinks, causal)
        assert torch.equal(mod(0, 0, q_idx, kv_idx), expected)


def test_an_int_window_is_the_symmetric_pair():
    for window, causal in itertools.product([0, 1, 4, -1], [True, False]):
        assert torch.equal(
            sliding_window_mask(11, 13, window, 1, causal), sliding_window_mask(11, 13, (window, window), 1, causal)
        )
    assert window_bounds(3) == (3, 3) and window_bounds((-1, 8)) == (-1, 8) and window_bounds([2, 0]) == (2, 0)


def test_asymmetric_window_rows():
    mask = sliding_window_mask(10, 10, (3, 1), causal=False)
    assert mask[5].nonzero().flatten().tolist() == [2, 3, 4, 5, 6]
    assert sliding_window_mask(10, 10, (3, 9), causal=True)[5].nonzero().flatten().tolist() == [2, 3, 4, 5]
    assert bool(sliding_window_mask(4, 6, (-1, -1), causal=False).all())  # unbounded both ways: dense


@pytest.mark.parametrize(
    "window, error, message",
    [
        ((-2, 3), ValueError, "window: expected integers >= -1"),
        (-5, ValueError, "window: expected integers >= -1"),
        ((1, 2, 3), ValueError, "window: expected an integer or a \\(left, right\\) pair"),
        ((1.5, 2), TypeError, "window: expected an integer or a \\(left, right\\) pair of integers"),
        ((True, 2), TypeError, "window: expected integers"),
        ("4", TypeError, "window: expected an integer"),
    ],
)
def test_bad_windows_raise_clear_errors(window, error, message):
    with pytest.raises(error, match=message):
        window_bounds(window)


def test_visible_pairs_counts_pair_windows():
    for q_len, kv_len, window, sinks, causal in itertools.product(
        [1, 7, 20], [1, 9, 20], PAIRS, [0, 3, 30], [True, False]
    ):
        expected = int(sliding_window_mask(q_len, kv_len, window, sinks, causal).sum())
        assert visible_pairs(q_len, kv_len, window, sinks, causal) == expected


def test_varlen_mask_is_block_diagonal_with_each_sequence_mask():
    q_lens, k_lens = [1, 6, 0, 9], [3, 6, 2, 4]
    cu_q = torch.tensor([0, *itertools.accumulate(q_lens)], dtype=torch.int32)
    cu_k = torch.tensor([0, *itertools.accumulate(k_lens)], dtype=torch.int32)
    for window, sinks, causal in [((2, 1), 1, False), (1, 0, True), ((-1, 0), 5, True)]:
        expected = torch.block_diag(
            *[sliding_window_mask(q, k, window, sinks, causal).int() for q, k in zip(q_lens, k_lens)]
        ).bool()
        assert torch.equal(varlen_mask(cu_q, cu_k, window, sinks, causal), expected)


def test_end_sinks_are_the_last_keys_and_respect_causality():
    # 6 keys, window 0 (each query sees its own position), one end sink: key 5.
    non_causal = sliding_window_mask(6, 6, 0, causal=False, end_sinks=1)
    assert non_causal[:, 5].all() and non_causal.sum() == 6 + 5
    causal = sliding_window_mask(6, 6, 0, causal=True, end_sinks=2)  # keys 4, 5: only from their positions on
    assert causal[:, 4].tolist() == [False] * 4 + [True] * 2 and causal[:, 5].tolist() == [False] * 5 + [True]
    # Fewer queries: the end sinks are the last keys of the sequence, not of the queries.
    assert sliding_window_mask(2, 9, 0, causal=False, end_sinks=1)[:, 8].all()
    assert sliding_window_mask(4, 4, 0, causal=False, end_sinks=10).all()  # more end sinks than keys: dense


def test_end_sinks_in_every_builder_and_the_pair_count():
    for q_len, kv_len, window, sinks, end_sinks, causal in itertools.product(
        [1, 9, 30], [1, 12, 30], [0, 2, (3, 1), (-1, 0)], [0, 2], [0, 1, 4, 40], [True, False]
    ):
        mask = sliding_window_mask(q_len, kv_len, window, sinks, causal, end_sinks=end_sinks)
        mod = sliding_window_mask_mod(q_len, kv_len, window, sinks, causal, end_sinks=end_sinks)
        assert torch.equal(mod(0, 0, torch.arange(q_len)[:, None], torch.arange(kv_len)[None, :]), mask)
        assert visible_pairs(q_len, kv_len, window, sinks, causal, end_sinks) == int(mask.sum())


def test_varlen_end_sinks_are_each_sequence_last_keys():
    lengths = [5, 3, 7]
    cu = torch.tensor([0, 5, 8, 15], dtype=torch.int32)
    packed = varlen_mask(cu, cu, 0, causal=False, end_sinks=1)
    for start, length in zip([0, 5, 8], lengths):
        block = packed[start : start + length, start : start + length]
        assert torch.equal(block, sliding_window_mask(length, length, 0, causal=False, end_sinks=1))
    assert int(packed.sum()) == sum(int(sliding_window_mask(n, n, 0, causal=False, end_sinks=1).sum()) for n in lengths)
