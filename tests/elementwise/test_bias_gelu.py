import pytest
import torch

from menagerie.kernels.elementwise import bias_gelu, bias_gelu_reference

# Relative tolerance: a few units in the last place of the dtype; absolute: values
# near zero. The reference runs in float64 on the same (rounded) inputs.
TOLERANCES = {
    torch.float32: dict(atol=1e-5, rtol=1e-6),
    torch.float16: dict(atol=1e-3, rtol=2e-3),
    torch.bfloat16: dict(atol=8e-3, rtol=1.6e-2),
}
DTYPES = [torch.float32, torch.float16, pytest.param(torch.bfloat16, marks=pytest.mark.gpu)]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


# Odd shapes straddle the 16x256 tiles; 1x1 and one full tile are the edge cases.
@pytest.mark.parametrize("rows, cols", [(1, 1), (16, 256), (17, 257), (33, 700), (5, 1031)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_and_backward_match_reference(rows, cols, dtype):
    generator = torch.Generator().manual_seed(rows * 1000 + cols)
    x = (3 * torch.randn(rows, cols, generator=generator)).to(DEVICE, dtype).requires_grad_()
    bias = torch.randn(cols, generator=generator).to(DEVICE, dtype).requires_grad_()
    dy = torch.randn(rows, cols, generator=generator).to(DEVICE, dtype)

    y = bias_gelu(x, bias)
    dx, dbias = torch.autograd.grad(y, (x, bias), dy)

    x64 = x.detach().double().requires_grad_()
    bias64 = bias.detach().double().requires_grad_()
    y64 = bias_gelu_reference(x64, bias64)
    dx64, dbias64 = torch.autograd.grad(y64, (x64, bias64), dy.double())

    assert y.dtype == dx.dtype == dbias.dtype == dtype
    tol = TOLERANCES[dtype]
    torch.testing.assert_close(y.double(), y64, **tol)
    torch.testing.assert_close(dx.double(), dx64, **tol)
    # The bias gradient sums `rows` terms in float32 before one rounding to dtype.
    torch.testing.assert_close(dbias.double(), dbias64, atol=tol["atol"] * rows**0.5, rtol=tol["rtol"])


def test_empty_input():
    x = torch.empty(0, 8, device=DEVICE)
    assert bias_gelu(x, torch.zeros(8, device=DEVICE)).shape == (0, 8)


def test_non_contiguous_input():
    x = torch.randn(40, 30, device=DEVICE).t()
    bias = torch.randn(40, device=DEVICE)
    torch.testing.assert_close(bias_gelu(x, bias), bias_gelu_reference(x, bias), atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize(
    "x, bias, error, message",
    [
        (torch.randn(4, 3).int(), torch.randn(3).int(), TypeError, "x: expected float32"),
        (torch.randn(4, 3), torch.randn(3).half(), TypeError, "bias: expected dtype"),
        (torch.randn(4, 3, 2), torch.randn(2), ValueError, r"x: expected shape \(N, C\)"),
        (torch.randn(4, 3), torch.randn(4), ValueError, r"bias: expected shape \(3,\)"),
    ],
)
def test_bad_inputs_raise_clear_errors(x, bias, error, message):
    with pytest.raises(error, match=message):
        bias_gelu(x.to(DEVICE), bias.to(DEVICE))
