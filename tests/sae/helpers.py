"""Random SAE problems and dtype-derived tolerances shared by the SAE kernel tests."""

import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def grid(tensor: torch.Tensor) -> torch.Tensor:
    """Rounds to multiples of 1/64 inside (-8, 8), so ``x - b_dec`` is exact in every dtype tested
    and the kernel and the float64 reference select from the same pre-activations."""
    return (tensor.clamp(-7.9, 7.9) * 64).round() / 64


def sae_problem(rows, dim, latents, dtype, seed=0):
    """``(x, W_enc (d, M) as the transpose of an (M, d) tensor, b_enc, b_dec, W_dec)``."""
    generator = torch.Generator().manual_seed(seed)
    x = grid(torch.randn(rows, dim, generator=generator))
    W_enc = (torch.randn(latents, dim, generator=generator) / dim**0.5).t()
    b_enc = 0.1 * torch.randn(latents, generator=generator)
    b_dec = grid(0.5 * torch.randn(dim, generator=generator))
    W_dec = torch.randn(latents, dim, generator=generator) / dim**0.5
    return tuple(t.to(DEVICE, dtype) for t in (x, W_enc, b_enc, b_dec, W_dec))


def float64_leaves(*tensors):
    return [t.detach().double().requires_grad_() for t in tensors]


def assert_close_for_dtype(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, ulps: float = 16):
    """Within ``ulps`` units of the dtype's epsilon, relative to each element and to the result's
    largest magnitude (sums of many products carry absolute error on that scale)."""
    eps = torch.finfo(dtype).eps
    expected = expected.detach()
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual.double(), expected.double(), rtol=ulps * eps, atol=ulps * eps * scale)
