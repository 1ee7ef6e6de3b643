import pytest
import torch

from menagerie.kernels.ssm import selective_scan_reference
from menagerie.models.mamba import MambaBlock


def test_block_with_the_kernel_matches_the_block_with_the_reference():
    torch.manual_seed(0)
    block = MambaBlock(d_model=8, d_state=4, d_conv=3)
    reference = MambaBlock(d_model=8, d_state=4, d_conv=3, scan=selective_scan_reference)
    reference.load_state_dict(block.state_dict())
    hidden = torch.randn(2, 37, 8)
    out = block(hidden)
    expected = reference(hidden)
    assert out.shape == hidden.shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    grads = torch.autograd.grad(out.square().sum(), list(block.parameters()))
    expected_grads = torch.autograd.grad(expected.square().sum(), list(reference.parameters()))
    for (name, _), grad, expected_grad in zip(block.named_parameters(), grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, atol=1e-4, rtol=1e-3, msg=lambda m, name=name: f"{name}: {m}")


def test_block_is_causal():
    torch.manual_seed(1)
    block = MambaBlock(d_model=8, d_state=4)
    hidden = torch.randn(1, 20, 8)
    changed = hidden.clone()
    changed[:, 12:] += 1.0
    with torch.no_grad():
        torch.testing.assert_close(block(hidden)[:, :12], block(changed)[:, :12])


def test_dt_bias_initialisation_gives_steps_in_range():
    block = MambaBlock(d_model=16, dt_min=1e-3, dt_max=1e-1)
    steps = torch.nn.functional.softplus(block.dt_proj.bias)
    assert steps.min() >= 1e-3 * 0.999 and steps.max() <= 1e-1 * 1.001


def test_bad_arguments():
    with pytest.raises(ValueError, match="positive"):
        MambaBlock(d_model=0)
    with pytest.raises(ValueError, match=r"hidden: expected \(batch, L, 8\)"):
        MambaBlock(d_model=8)(torch.randn(2, 5, 7))
