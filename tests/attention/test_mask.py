import itertools

import torch
import torch.nn.functional as F

from kernels.attention import sliding_window_mask, sliding_window_mask_mod, visible_pairs


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
            [1, 5, 20, 37], [1, 9, 20, 37], [0, 1, 3, 100], [0, 1, 4, 30], [True, False]):
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
        block_mask = create_block_mask(sliding_window_mask_mod(q_len, kv_len, window, sinks, causal), None, None,
                                       q_len, kv_len, device="cpu", BLOCK_SIZE=16)
        mask = sliding_window_mask(q_len, kv_len, window, sinks, causal).float()
        padded = F.pad(mask, (0, -kv_len % 16, 0, -q_len % 16))
        needed = F.max_pool2d(padded[None], 16)[0] > 0  # 16x16 blocks holding a visible pair
        assert torch.equal(block_mask.to_dense()[0, 0].bool(), needed)
