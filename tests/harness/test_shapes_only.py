"""``shapes_only()``: GEMMs and convolutions keep their evaluated layouts and compute nothing; other ops compute.

Uninitialized memory is filled with NaN here (``fill_uninitialized_memory``), so an output that was
allocated but not computed is told apart from an evaluated one by its values.
"""

import pytest
import torch
import torch.nn.functional as F

from menagerie.harness.shapes_only import shapes_only


@pytest.fixture(autouse=True)
def nan_filled_allocations():
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    yield
    torch.use_deterministic_algorithms(False)


def linear_2d(x, w, b):
    return F.linear(x[0], w, b)


def linear_3d(x, w, b):
    return F.linear(x, w)


def batched(x, w, b):
    return torch.bmm(x, x.transpose(1, 2))


def batched_with_bias(x, w, b):
    return torch.baddbmm(x[:, :, :3], x, w.t()[:, :3].expand(x.shape[0], -1, -1))


def einsum(x, w, b):
    return torch.einsum("bld,ed->ble", x, w)


def depthwise_conv(x, w, b):
    channels = x.shape[-1]
    weight = w[:channels, :4].unsqueeze(1).contiguous()
    return F.conv1d(x.transpose(1, 2), weight, b[:channels], groups=channels, padding=3)


OPS = [linear_2d, linear_3d, batched, batched_with_bias, einsum, depthwise_conv]


def operands(dtype):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 13, 11, generator=generator).to(dtype).requires_grad_()
    w = torch.randn(17, 11, generator=generator).to(dtype).requires_grad_()
    b = torch.randn(17, generator=generator).to(dtype).requires_grad_()
    return x, w, b


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("op", OPS, ids=lambda op: op.__name__)
def test_outputs_and_gradients_keep_their_layout_and_are_not_computed(op, dtype):
    evaluated_inputs, skipped_inputs = operands(dtype), operands(dtype)
    evaluated = op(*evaluated_inputs)
    evaluated.sum().backward()
    with shapes_only():
        skipped = op(*skipped_inputs)
        skipped.sum().backward()
    for expected, got in [
        (evaluated, skipped),
        *((a.grad, b.grad) for a, b in zip(evaluated_inputs, skipped_inputs) if a.grad is not None),
    ]:
        assert (got.shape, got.stride(), got.dtype, got.device) == (
            expected.shape,
            expected.stride(),
            expected.dtype,
            expected.device,
        )
    assert torch.isfinite(evaluated).all()
    assert torch.isnan(skipped).all(), "the op was computed"


def test_other_ops_still_compute():
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(1))
    with shapes_only():
        got = F.silu(x) * 2 + x.softmax(-1)
        top = torch.topk(x, 3, dim=-1)
    torch.testing.assert_close(got, F.silu(x) * 2 + x.softmax(-1), rtol=0, atol=0)
    assert torch.equal(top.indices, torch.topk(x, 3, dim=-1).indices)
