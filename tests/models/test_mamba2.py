import pytest
import torch

from menagerie.kernels.ssm import ssd_chunked_reference, ssd_scan
from menagerie.models.mamba2 import GatedRMSNorm, Mamba2Block

# 32 inner channels in 4 heads of 8 sharing 2 groups of B and C; L = 37 ends in a partial chunk of 16.
SMALL = dict(d_model=16, d_state=8, d_conv=3, headdim=8, ngroups=2, chunk_size=16)


def test_block_with_the_kernel_matches_the_block_with_the_reference():
    torch.manual_seed(0)
    block = Mamba2Block(**SMALL, scan=ssd_scan)
    reference = Mamba2Block(**SMALL, scan=ssd_chunked_reference)
    reference.load_state_dict(block.state_dict())
    hidden = torch.randn(2, 37, 16)
    out = block(hidden)
    expected = reference(hidden)
    assert out.shape == hidden.shape
    # float32 throughout: a few float32 roundings of sums over 16 steps and 8 states.
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    grads = torch.autograd.grad(out.square().sum(), list(block.parameters()))
    expected_grads = torch.autograd.grad(expected.square().sum(), list(reference.parameters()))
    for (name, _), grad, expected_grad in zip(block.named_parameters(), grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, atol=1e-4, rtol=1e-3, msg=lambda m, name=name: f"{name}: {m}")


def test_the_kernel_is_the_default_scan():
    assert Mamba2Block(**SMALL).scan is ssd_scan


def test_parameters_have_mamba_ssm_names_and_shapes():
    block = Mamba2Block(**SMALL)
    heads, conv_channels = 4, 32 + 2 * 2 * 8
    assert {name: tuple(value.shape) for name, value in block.state_dict().items()} == {
        "in_proj.weight": (32 + conv_channels + heads, 16),  # z, xBC, dt
        "conv1d.weight": (conv_channels, 1, 3),
        "conv1d.bias": (conv_channels,),
        "dt_bias": (heads,),
        "A_log": (heads,),
        "D": (heads,),
        "norm.weight": (32,),
        "out_proj.weight": (16, 32),
    }
    defaults = Mamba2Block(d_model=64)
    assert (defaults.d_state, defaults.headdim, defaults.nheads, defaults.ngroups, defaults.chunk_size) == (
        128,
        64,
        2,
        1,
        256,
    )
    assert defaults.conv1d.kernel_size == (4,)


def test_block_is_causal():
    torch.manual_seed(1)
    block = Mamba2Block(**SMALL, scan=ssd_chunked_reference)
    hidden = torch.randn(1, 40, 16)
    changed = hidden.clone()
    changed[:, 21:] += 1.0
    with torch.no_grad():
        torch.testing.assert_close(block(hidden)[:, :21], block(changed)[:, :21])


def test_initialisation_follows_mamba_ssm():
    block = Mamba2Block(d_model=512, headdim=16, A_init_range=(1.0, 16.0), dt_min=1e-3, dt_max=1e-1)
    decays, steps = torch.exp(block.A_log), torch.nn.functional.softplus(block.dt_bias)
    assert decays.min() >= 1.0 and decays.max() <= 16.0
    assert steps.min() >= 1e-3 * 0.999 and steps.max() <= 1e-1 * 1.001
    assert torch.equal(block.D, torch.ones(64)) and torch.equal(block.norm.weight, torch.ones(1024))


def test_gated_norm_normalises_the_gated_input_per_group():
    torch.manual_seed(2)
    norm = GatedRMSNorm(8, group_size=4, eps=0.0)
    y, z = torch.randn(3, 8), torch.randn(3, 8)
    out = norm(y, z)
    gated = (y * torch.nn.functional.silu(z)).unflatten(-1, (2, 4))
    ratio = out.unflatten(-1, (2, 4)) / gated
    # A positive factor per (row, group) times y * silu(z), making each group's RMS 1: the gate
    # goes in before the norm (norm(y) * silu(z) would not have unit RMS).
    torch.testing.assert_close(ratio, ratio[..., :1].expand_as(ratio))
    assert (ratio > 0).all()
    torch.testing.assert_close(out.unflatten(-1, (2, 4)).square().mean(-1), torch.ones(3, 2))
    changed = y.clone()
    changed[:, 4:] *= 5.0
    torch.testing.assert_close(norm(changed, z)[:, :4], out[:, :4])


def test_bad_arguments():
    with pytest.raises(ValueError, match="positive, got d_model=0"):
        Mamba2Block(d_model=0)
    with pytest.raises(ValueError, match="positive, got headdim=-8"):
        Mamba2Block(d_model=16, headdim=-8)
    with pytest.raises(ValueError, match=r"d_model \* expand \(48\) must be divisible by headdim \(64\)"):
        Mamba2Block(d_model=24)
    with pytest.raises(
        ValueError, match=r"heads \(d_model \* expand / headdim = 3\) must be divisible by ngroups \(2\)"
    ):
        Mamba2Block(d_model=24, headdim=16, ngroups=2)
    with pytest.raises(ValueError, match="A_init_range"):
        Mamba2Block(d_model=16, headdim=8, A_init_range=(0.0, 16.0))
    with pytest.raises(ValueError, match="dt_min and dt_max"):
        Mamba2Block(d_model=16, headdim=8, dt_min=0.1, dt_max=0.01)
    with pytest.raises(ValueError, match=r"hidden: expected \(batch, L, 16\)"):
        Mamba2Block(**SMALL)(torch.randn(2, 5, 7))


@pytest.mark.gpu
@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
def test_block_matches_mamba_ssm_mamba2(fused):
    mamba2 = pytest.importorskip("mamba_ssm.modules.mamba2")
    if fused:
        pytest.importorskip("causal_conv1d", reason="mamba-ssm's fused path calls causal-conv1d's kernel")
    torch.manual_seed(3)
    shape = dict(d_model=64, d_state=16, headdim=16, ngroups=2, chunk_size=32)
    block = Mamba2Block(**shape).cuda()
    upstream = mamba2.Mamba2(**shape, use_mem_eff_path=fused).cuda()
    upstream.load_state_dict(block.state_dict())
    hidden = torch.randn(2, 100, 64, device="cuda")
    # mamba-ssm's float32 matmuls may run in TF32 (10-bit mantissa).
    torch.testing.assert_close(block(hidden), upstream(hidden), atol=5e-3, rtol=5e-3)
