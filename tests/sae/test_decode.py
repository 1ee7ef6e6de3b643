import pytest
import torch

from menagerie.kernels.sae import decode_dense, decode_embedding_bag, sparse_decode, sparse_decode_mse
from tests.sae.helpers import DEVICE, assert_close_for_dtype, float64_leaves

DTYPES = [torch.float32, torch.float16, pytest.param(torch.bfloat16, marks=pytest.mark.gpu)]
SHAPES = [(37, 45, 203, 7), (5, 130, 70, 1), (9, 33, 77, 75)]


def decode_problem(rows, dim, latents, k, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    indices = torch.stack([torch.randperm(latents, generator=generator)[:k] for _ in range(rows)])
    values = torch.rand(rows, k, generator=generator) * 3
    values[:, -1] = 0.0  # ReLU zeros reach the decoder too
    W_dec = torch.randn(latents, dim, generator=generator) / dim**0.5
    b_dec = torch.randn(dim, generator=generator)
    target = torch.randn(rows, dim, generator=generator)
    return (
        values.to(DEVICE, dtype),
        indices.to(DEVICE),
        W_dec.to(DEVICE, dtype),
        b_dec.to(DEVICE, dtype),
        target.to(DEVICE, dtype),
    )


@pytest.mark.parametrize("rows, dim, latents, k", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_and_gradients_match_float64_dense(rows, dim, latents, k, dtype):
    values, indices, W_dec, b_dec, _ = decode_problem(rows, dim, latents, k, dtype)
    leaves = [t.clone().requires_grad_() for t in (values, W_dec, b_dec)]
    recon = sparse_decode(leaves[0], indices, leaves[1], leaves[2])
    grad_recon = torch.randn(recon.shape, generator=torch.Generator().manual_seed(9)).to(DEVICE, dtype)
    grads = torch.autograd.grad(recon, leaves, grad_recon)

    leaves64 = float64_leaves(values, W_dec, b_dec)
    expected = decode_dense(leaves64[0], indices, leaves64[1], leaves64[2])
    expected_grads = torch.autograd.grad(expected, leaves64, grad_recon.double())
    assert recon.dtype == dtype
    assert_close_for_dtype(recon, expected, dtype, ulps=16 if dtype == torch.float32 else 2)
    for grad, want in zip(grads, expected_grads):
        assert grad.dtype == dtype
        assert_close_for_dtype(grad, want, dtype, ulps=16 if dtype == torch.float32 else 2)


@pytest.mark.parametrize("rows, dim, latents, k", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_mse_matches_float64_dense(rows, dim, latents, k, dtype):
    values, indices, W_dec, b_dec, target = decode_problem(rows, dim, latents, k, dtype, seed=1)
    leaves = [t.clone().requires_grad_() for t in (values, W_dec, b_dec, target)]
    loss, residual = sparse_decode_mse(leaves[0], indices, leaves[1], leaves[2], leaves[3])
    grads = torch.autograd.grad(loss, leaves)

    leaves64 = float64_leaves(values, W_dec, b_dec, target)
    expected_residual = decode_dense(leaves64[0], indices, leaves64[1], leaves64[2]) - leaves64[3]
    expected_loss = expected_residual.pow(2).mean()
    expected_grads = torch.autograd.grad(expected_loss, leaves64)
    assert not residual.requires_grad
    assert_close_for_dtype(residual, expected_residual, dtype, ulps=16 if dtype == torch.float32 else 2)
    assert_close_for_dtype(loss, expected_loss, dtype, ulps=16 if dtype == torch.float32 else 4)
    for grad, want in zip(grads, expected_grads):
        # The gradients start from the residual rounded to the dtype: a few roundings.
        assert_close_for_dtype(grad, want, dtype, ulps=16 if dtype == torch.float32 else 4)


def test_embedding_bag_baseline_is_the_same_decoder():
    values, indices, W_dec, b_dec, _ = decode_problem(21, 40, 90, 5, torch.float64)
    torch.testing.assert_close(
        decode_embedding_bag(values, indices, W_dec, b_dec), decode_dense(values, indices, W_dec, b_dec)
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(indices=lambda i: i + 90), r"indices: expected latent indices in \[0, 90\)"),
        (dict(indices=lambda i: i[:, :2]), "indices: expected shape"),
        (dict(indices=lambda i: i.float()), "indices: expected an int64 or int32 tensor"),
        (dict(W_dec=lambda w: w.half()), "W_dec: expected torch.float32"),
        (dict(b_dec=lambda b: b[:-1]), "b_dec: expected shape"),
    ],
)
def test_bad_inputs_raise_clear_errors(change, message):
    values, indices, W_dec, b_dec, _ = decode_problem(6, 40, 90, 5, torch.float32)
    arguments = dict(values=values, indices=indices, W_dec=W_dec, b_dec=b_dec)
    arguments.update({name: edit(arguments[name]) for name, edit in change.items()})
    with pytest.raises((ValueError, TypeError), match=message):
        sparse_decode(**arguments)


def test_mse_target_shape_is_checked():
    values, indices, W_dec, b_dec, target = decode_problem(6, 40, 90, 5, torch.float32)
    with pytest.raises(ValueError, match="target: expected shape"):
        sparse_decode_mse(values, indices, W_dec, b_dec, target[:, :-1])
