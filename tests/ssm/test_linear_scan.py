import pytest
import torch

from menagerie.kernels.ssm import linear_scan, linear_scan_reference, linear_scan_sequential
from menagerie.kernels.ssm.linear_scan_cuda import linear_scan_cuda, unavailable_reason
from tests.ssm.helpers import DEVICE

# The state is float32 in every kernel; low-precision outputs carry one rounding of
# the state and (for the gate gradient) one of the saved state: a few ulps of the dtype.
TOLERANCES = {
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    torch.float16: dict(atol=4e-3, rtol=4e-3),
    torch.bfloat16: dict(atol=3e-2, rtol=3e-2),
}
DTYPES = [torch.float32, torch.float16, pytest.param(torch.bfloat16, marks=pytest.mark.gpu)]


def random_scan_inputs(batch, channels, length, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    gates = torch.sigmoid(torch.randn(batch, channels, length, generator=generator) + 1.0)  # decays in (0, 1)
    tokens = torch.randn(batch, channels, length, generator=generator)
    return gates.to(DEVICE, dtype), tokens.to(DEVICE, dtype)


def check_against_sequential(scan, gates, tokens):
    gates, tokens = gates.clone().requires_grad_(), tokens.clone().requires_grad_()
    states = scan(gates, tokens)
    grad_states = torch.randn(states.shape, generator=torch.Generator().manual_seed(7)).to(states.device, states.dtype)
    grad_gates, grad_tokens = torch.autograd.grad(states, (gates, tokens), grad_states)

    gates64 = gates.detach().double().requires_grad_()
    tokens64 = tokens.detach().double().requires_grad_()
    expected = linear_scan_sequential(gates64, tokens64)
    expected_gates, expected_tokens = torch.autograd.grad(expected, (gates64, tokens64), grad_states.double())

    tol = TOLERANCES[tokens.dtype]
    assert states.dtype == grad_gates.dtype == grad_tokens.dtype == tokens.dtype
    torch.testing.assert_close(states.double(), expected, **tol)
    torch.testing.assert_close(grad_tokens.double(), expected_tokens, **tol)
    torch.testing.assert_close(grad_gates.double(), expected_gates, **tol)


# Lengths straddle the 128-step chunk; channel counts straddle the 4-row block.
@pytest.mark.parametrize("length", [1, 7, 129, 300])
@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_scan_matches_sequential(length, dtype):
    check_against_sequential(linear_scan, *random_scan_inputs(2, 3, length, dtype))


def test_triton_scan_with_gates_outside_unit_interval():
    gates, tokens = random_scan_inputs(1, 5, 130, torch.float32, seed=3)
    check_against_sequential(linear_scan, gates * 2 - 1, tokens)  # signs flip, still |a| < 1


@pytest.mark.parametrize("length", [1, 2, 7, 129, 1000])
def test_doubling_reference_matches_sequential(length):
    gates, tokens = random_scan_inputs(2, 3, length, torch.float64)
    torch.testing.assert_close(linear_scan_reference(gates, tokens), linear_scan_sequential(gates, tokens))


def test_doubling_reference_is_differentiable():
    gates, tokens = random_scan_inputs(1, 2, 33, torch.float64)
    gates.requires_grad_()
    tokens.requires_grad_()
    assert torch.autograd.gradcheck(linear_scan_reference, (gates, tokens))


def test_non_contiguous_and_empty_inputs():
    gates, tokens = random_scan_inputs(3, 40, 2, torch.float32)
    gates, tokens = gates.transpose(1, 2), tokens.transpose(1, 2)  # (3, 2, 40), not contiguous
    torch.testing.assert_close(linear_scan(gates, tokens), linear_scan_sequential(gates, tokens), atol=1e-5, rtol=1e-5)
    empty = torch.empty(2, 0, 5, device=DEVICE)
    assert linear_scan(empty, empty).shape == (2, 0, 5)


@pytest.mark.parametrize(
    "gates, tokens, error, message",
    [
        (torch.rand(2, 3), torch.rand(2, 3), ValueError, r"gates: expected shape \(B, C, T\)"),
        (torch.rand(2, 3, 4), torch.rand(2, 3, 5), ValueError, "gates: shape"),
        (torch.rand(2, 3, 4).half(), torch.rand(2, 3, 4), TypeError, "gates: dtype"),
        (torch.rand(2, 3, 4).int(), torch.rand(2, 3, 4).int(), TypeError, "gates: expected float32"),
        ([1.0], torch.rand(2, 3, 4), TypeError, "gates: expected a torch.Tensor"),
    ],
)
def test_bad_inputs_raise_clear_errors(gates, tokens, error, message):
    as_device = lambda value: value.to(DEVICE) if isinstance(value, torch.Tensor) else value  # noqa: E731
    with pytest.raises(error, match=message):
        linear_scan(as_device(gates), as_device(tokens))


def test_cuda_variant_says_why_it_cannot_run_on_the_cpu():
    assert unavailable_reason(torch.device("cpu")) == "the CUDA C variant needs a CUDA device"
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        linear_scan_cuda(torch.rand(1, 1, 4), torch.rand(1, 1, 4))


@pytest.mark.gpu
@pytest.mark.skipif(
    unavailable_reason(torch.device("cuda")) is not None if torch.cuda.is_available() else True,
    reason="needs cupy and a GPU",
)
@pytest.mark.parametrize("length", [1, 7, 129, 300, 4099])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_scan_matches_sequential(length, dtype):
    check_against_sequential(linear_scan_cuda, *random_scan_inputs(2, 5, length, dtype))
