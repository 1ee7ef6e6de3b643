import pytest
import torch

from menagerie.kernels.sae import topk_encode, topk_encode_reference
from menagerie.kernels.sae.encode import decode_keys, topk_keys
from tests.sae.helpers import DEVICE, assert_close_for_dtype, float64_leaves, sae_problem

DTYPES = [torch.float32, torch.float16, pytest.param(torch.bfloat16, marks=pytest.mark.gpu)]
# Odd sizes that are not multiples of any block; k from 1 to nearly M.
SHAPES = [(37, 45, 203, 7), (5, 19, 70, 1), (9, 33, 77, 75), (64, 16, 130, 64)]


@pytest.mark.parametrize("rows, dim, latents, k", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_matches_float64_definition(rows, dim, latents, k, dtype):
    x, W_enc, b_enc, b_dec, _ = sae_problem(rows, dim, latents, dtype)
    values, indices = topk_encode(x, W_enc, b_enc, b_dec, k)
    expected_values, expected_indices = topk_encode_reference(*float64_leaves(x, W_enc, b_enc, b_dec), k)
    assert values.dtype == dtype and indices.dtype == torch.int64 and values.shape == (rows, k)
    assert torch.equal(indices, expected_indices)
    assert_close_for_dtype(values, expected_values, dtype, ulps=1 if dtype != torch.float32 else 16)


def tie_problem(rows, dim, latents, seed):
    """Small integers: every dot product is exact, so equal pre-activations really are equal,
    and ReLU makes many zeros that must also be ordered by index."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(-2, 3, (rows, dim), generator=generator).float().to(DEVICE)
    W_enc = torch.randint(-1, 2, (dim, latents), generator=generator).float().to(DEVICE)
    return x, W_enc, torch.zeros(latents, device=DEVICE), torch.zeros(dim, device=DEVICE)


def test_ties_go_to_the_lower_index():
    x, W_enc, b_enc, b_dec = tie_problem(23, 17, 90, seed=3)
    values, indices = topk_encode(x, W_enc, b_enc, b_dec, 40)
    expected_values, expected_indices = topk_encode_reference(x, W_enc, b_enc, b_dec, 40)
    assert (expected_values[:, :-1] == expected_values[:, 1:]).any(), "the data must contain ties"
    assert torch.equal(values, expected_values) and torch.equal(indices, expected_indices)


def test_the_gpu_merge_with_tl_topk_selects_the_same(monkeypatch):
    """GPUs merge with tl.topk, the interpreter with the bitonic network: both must give the
    definition's selection, ties included (tl.topk is slow interpreted, so one small case)."""
    import menagerie.kernels.sae.encode as encode

    monkeypatch.setattr(encode, "MERGE_WITH_TL_TOPK", True)
    x, W_enc, b_enc, b_dec = tie_problem(3, 8, 70, seed=5)
    values, indices = topk_encode(x, W_enc, b_enc, b_dec, 5)
    expected_values, expected_indices = topk_encode_reference(x, W_enc, b_enc, b_dec, 5)
    assert torch.equal(values, expected_values) and torch.equal(indices, expected_indices)


@pytest.mark.parametrize("splits", [2, 3])
def test_several_latent_ranges_per_row_block_give_the_same_selection(splits):
    x, W_enc, b_enc, b_dec, _ = sae_problem(21, 24, 300, torch.float32, seed=1)
    one = topk_keys(x - b_dec, W_enc, b_enc, 9, splits=1)
    assert torch.equal(topk_keys(x - b_dec, W_enc, b_enc, 9, splits=splits), one)


def test_allowed_latents_restrict_the_selection():
    x, W_enc, b_enc, b_dec, _ = sae_problem(13, 20, 100, torch.float32, seed=2)
    allowed = torch.zeros(100, dtype=torch.bool, device=DEVICE)
    allowed[torch.arange(3, 100, 4)] = True
    values, indices = topk_encode(x, W_enc, b_enc, b_dec, 5, allowed=allowed)
    reference_values, reference_indices = topk_encode_reference(
        x.double(), W_enc[:, allowed].double(), b_enc[allowed].double(), b_dec.double(), 5
    )
    assert torch.equal(indices, torch.nonzero(allowed).squeeze(1)[reference_indices])
    assert_close_for_dtype(values, reference_values, torch.float32)


@pytest.mark.parametrize("rows, dim, latents, k", SHAPES[:3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_match_float64_definition(rows, dim, latents, k, dtype):
    inputs = [t.clone().requires_grad_() for t in sae_problem(rows, dim, latents, dtype)[:4]]
    values, _ = topk_encode(*inputs, k)
    grad_values = torch.randn(values.shape, generator=torch.Generator().manual_seed(5)).to(DEVICE, dtype)
    grads = torch.autograd.grad(values, inputs, grad_values)

    leaves = float64_leaves(*inputs)
    expected_values, _ = topk_encode_reference(*leaves, k)
    expected = torch.autograd.grad(expected_values, leaves, grad_values.double())
    for name, grad, want in zip(("x", "W_enc", "b_enc", "b_dec"), grads, expected):
        assert grad.dtype == dtype and grad.shape == want.shape, name
        assert_close_for_dtype(grad, want, dtype, ulps=16 if dtype == torch.float32 else 4)


def test_a_single_requested_gradient_equals_the_full_backward_one():
    x, W_enc, b_enc, b_dec, _ = sae_problem(11, 20, 50, torch.float32)
    W_only = W_enc.clone().requires_grad_()
    (grad_alone,) = torch.autograd.grad(topk_encode(x, W_only, b_enc, b_dec, 3)[0].sum(), [W_only])
    leaves = [t.clone().requires_grad_() for t in (x, W_enc, b_enc, b_dec)]
    grads = torch.autograd.grad(topk_encode(*leaves, 3)[0].sum(), leaves)
    assert torch.equal(grad_alone, grads[1])


def test_keys_decode_to_every_latent_once_sorted_by_value():
    x, W_enc, b_enc, b_dec, _ = sae_problem(4, 16, 40, torch.float32)
    values, indices = decode_keys(topk_keys(x - b_dec, W_enc, b_enc, 40), torch.float32)
    assert sorted(indices[0].tolist()) == list(range(40)) and (values[:, :-1] >= values[:, 1:]).all()


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(k=0), "k: expected an int"),
        (dict(k=51), "k: expected an int"),
        (dict(k=2.0), "k: expected an int"),
        (dict(W_enc=torch.zeros(21, 50)), "W_enc: expected shape"),
        (dict(b_enc=torch.zeros(49)), "b_enc: expected shape"),
        (dict(b_dec=torch.zeros(20, dtype=torch.float16)), "b_dec: expected torch.float32"),
        (dict(x=torch.zeros(4, 20, dtype=torch.int32)), "x: expected float32, float16 or bfloat16"),
        (dict(x=torch.zeros(4, 2, 20)), "x: expected 2 dimensions"),
        (dict(allowed=torch.ones(49, dtype=torch.bool)), "allowed: expected a bool tensor"),
        (dict(allowed=torch.zeros(50, dtype=torch.bool)), "allowed: only 0 latents"),
    ],
)
def test_bad_inputs_raise_clear_errors(change, message):
    x, W_enc, b_enc, b_dec, _ = sae_problem(4, 20, 50, torch.float32)
    arguments = dict(x=x, W_enc=W_enc, b_enc=b_enc, b_dec=b_dec, k=3)
    arguments.update(
        {name: value.to(DEVICE) if isinstance(value, torch.Tensor) else value for name, value in change.items()}
    )
    with pytest.raises((ValueError, TypeError), match=message):
        topk_encode(**arguments)
