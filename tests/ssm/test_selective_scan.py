import pytest
import torch
import torch.nn.functional as F

from kernels.ssm import selective_scan, selective_scan_reference, selective_scan_sequential

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# fp32: the state accumulates a few hundred float32 roundings over the lengths tested;
# half precision: the outputs and gradients are rounded once to a dtype with 11 (fp16)
# or 8 (bf16) significant bits, on top of inputs already in that dtype.
TOLERANCES = {torch.float64: dict(atol=1e-10, rtol=1e-9), torch.float32: dict(atol=1e-5, rtol=1e-4),
              torch.float16: dict(atol=2e-3, rtol=4e-3), torch.bfloat16: dict(atol=2e-2, rtol=3e-2)}
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(layout, length, dtype, *, batch=2, dim=6, state=4, groups=2, with_D=True, with_z=True,
                with_bias=True, seed=0):
    generator = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=generator)  # noqa: E731
    bc_shape = {"shared": (dim, state), "batch": (batch, state, length), "group": (batch, groups, state, length)}
    inputs = dict(
        u=randn(batch, dim, length).to(dtype), delta=(0.5 * torch.rand(batch, dim, length, generator=generator)).to(dtype),
        A=-torch.exp(randn(dim, state)), B=randn(*bc_shape[layout]).to(dtype), C=randn(*bc_shape[layout]).to(dtype),
        D=randn(dim) if with_D else None, z=randn(batch, dim, length).to(dtype) if with_z else None,
        delta_bias=torch.rand(dim, generator=generator) if with_bias else None,
    )
    return {name: None if value is None else value.to(DEVICE) for name, value in inputs.items()}


def check(inputs, softplus, return_last_state=True, scan=selective_scan):
    leaves = {name: value.clone().requires_grad_() for name, value in inputs.items() if value is not None}
    result = scan(**{**inputs, **leaves}, delta_softplus=softplus, return_last_state=return_last_state)
    out, last = result if return_last_state else (result, None)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(9)).to(out.device, out.dtype)
    grads = torch.autograd.grad(out, list(leaves.values()), grad_out)

    leaves64 = {name: value.detach().double().requires_grad_() for name, value in leaves.items()}
    expected, expected_last = selective_scan_sequential(**{**inputs, **leaves64}, delta_softplus=softplus,
                                                        return_last_state=True)
    expected_grads = torch.autograd.grad(expected, list(leaves64.values()), grad_out.double())

    tol = TOLERANCES[inputs["u"].dtype]
    assert out.dtype == inputs["u"].dtype
    torch.testing.assert_close(out.double(), expected, **tol)
    if return_last_state:
        assert last.dtype == torch.float32 and not last.requires_grad
        torch.testing.assert_close(last.double(), expected_last.double(), **TOLERANCES[torch.float32])
    for name, grad, expected_grad in zip(leaves, grads, expected_grads):
        assert grad.dtype == leaves[name].dtype and grad.shape == leaves[name].shape
        torch.testing.assert_close(grad.double(), expected_grad, **tol, msg=lambda m: f"d{name}: {m}")


# Every option appears on and off, every layout and length, in both CPU-testable dtypes.
CONFIGS = {
    "batch-all-options": dict(layout="batch", length=129, softplus=True),
    "shared-bc": dict(layout="shared", length=37, softplus=True),
    "grouped-bc": dict(layout="group", length=33, softplus=True),
    "single-step": dict(layout="batch", length=1, softplus=True),
    "no-options": dict(layout="batch", length=7, softplus=False, with_D=False, with_z=False, with_bias=False),
    "no-z-no-bias": dict(layout="group", length=21, softplus=False, with_z=False, with_bias=False),
    "no-D": dict(layout="shared", length=19, softplus=True, with_D=False),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_fp32_matches_sequential_definition(config):
    options = dict(CONFIGS[config])
    softplus = options.pop("softplus")
    check(make_inputs(dtype=torch.float32, **options), softplus)


def test_long_sequence_and_larger_state():
    check(make_inputs("batch", 300, torch.float32, batch=1, dim=5, state=16, seed=3), softplus=True)


@pytest.mark.parametrize("config", ["batch-all-options", "grouped-bc", "no-options"])
@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=pytest.mark.gpu)])
def test_half_precision_matches_sequential_definition(config, dtype):
    options = dict(CONFIGS[config])
    softplus = options.pop("softplus")
    check(make_inputs(dtype=dtype, **options), softplus)


def test_without_last_state():
    check(make_inputs("batch", 9, torch.float32), softplus=True, return_last_state=False)


def test_softplus_passes_through_above_twenty():
    inputs = make_inputs("batch", 12, torch.float32, with_bias=False)
    inputs["delta"] = inputs["delta"] + 20.5  # every step above the threshold...
    inputs["delta"][..., :3] = -3.0  # ...but the first three
    inputs["A"] = inputs["A"] * 0.01  # keep exp(delta * A) away from underflow
    check(inputs, softplus=True)
    expected = selective_scan_sequential(**{**inputs, "delta": inputs["delta"].clamp(max=20.0)}, delta_softplus=False)
    raw = selective_scan(**inputs, delta_softplus=True)
    # Above 20 delta is used as it is, below it goes through softplus: compare with that by hand.
    by_hand = selective_scan_sequential(**{**inputs, "delta": torch.where(inputs["delta"] > 20, inputs["delta"],
                                                                          F.softplus(inputs["delta"]))})
    torch.testing.assert_close(raw, by_hand, **TOLERANCES[torch.float32])
    assert not torch.allclose(raw, expected)


@pytest.mark.parametrize("layout", ["shared", "batch", "group"])
def test_vectorized_reference_matches_sequential(layout):
    inputs = {name: None if value is None else value.double()
              for name, value in make_inputs(layout, 45, torch.float32, seed=4).items()}
    check(inputs, softplus=True, scan=selective_scan_reference)


def test_non_contiguous_inputs():
    inputs = make_inputs("batch", 23, torch.float32, seed=5)
    inputs["u"] = inputs["u"].transpose(1, 2).contiguous().transpose(1, 2)
    inputs["B"] = inputs["B"].transpose(1, 2).contiguous().transpose(1, 2)
    assert not inputs["u"].is_contiguous() and not inputs["B"].is_contiguous()
    check(inputs, softplus=True)


@pytest.mark.parametrize("change, error, message", [
    (dict(u=torch.randn(2, 6)), ValueError, r"u: expected shape \(batch, dim, L\)"),
    (dict(delta=torch.rand(2, 6, 8)), ValueError, "delta: expected the shape of u"),
    (dict(z=torch.randn(2, 5, 9)), ValueError, "z: expected the shape of u"),
    (dict(A=torch.randn(6)), ValueError, r"A: expected shape \(dim, N\)"),
    (dict(A=-torch.rand(6, 3), B=torch.randn(6, 3), C=torch.randn(6, 3)), ValueError, "power of two"),
    (dict(A=-torch.rand(6, 4).double()), TypeError, "A: expected float32"),
    (dict(u=torch.randint(0, 3, (2, 6, 9))), TypeError, "u: expected float32"),
    (dict(B=torch.randn(2, 4, 4, 9)), ValueError, "B: dim 6 is not a multiple of its 4 groups"),
    (dict(C=torch.randn(2, 4, 8)), ValueError, "C: expected"),
    (dict(D=torch.randn(5)), ValueError, r"D: expected shape \(6,\)"),
    (dict(delta_bias=torch.randn(6).half()), TypeError, "delta_bias: expected float32"),
])
def test_bad_inputs_raise_clear_errors(change, error, message):
    inputs = make_inputs("batch", 9, torch.float32)
    inputs.update({name: value.to(DEVICE) for name, value in change.items()})
    with pytest.raises(error, match=message):
        selective_scan(**inputs)
