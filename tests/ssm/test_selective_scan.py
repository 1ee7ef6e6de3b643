import pytest
import torch
import torch.nn.functional as F

import menagerie.kernels  # noqa: F401  (switches Triton to its interpreter when there is no GPU)
from menagerie.kernels.ssm.selective_scan import selective_scan
from menagerie.kernels.ssm.selective_scan_reference import selective_scan_reference, selective_scan_sequential
from tests.ssm.helpers import DEVICE, assert_matches

# fp32: every result is a sum of up to L*N float32 products and decays (the float32 state,
# a scan of depth log2(L)); 1e-4 of the result's largest magnitude is ~1000 float32 epsilons.
FP32_OF_SCALE = 1e-4
# A half-precision result is computed in float32 and rounded once to its dtype, an error of
# half an ulp (2**-11 relative for fp16, 2**-8 for bf16): allow one ulp on top of the above.
ROUNDING = {torch.float32: 0.0, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}
FLOAT64_OF_SCALE = 1e-10  # the vectorized reference in float64 against the definition in float64


def bc_shape(layout, batch, dim, n, length):
    return {"shared": (dim, n), "batch": (batch, n, length), "group": (batch, 2, n, length)}[layout]


def make_inputs(
    *,
    batch,
    dim,
    n,
    length,
    B="batch",
    C="batch",
    dtype=torch.float32,
    bc_dtype=None,
    D=True,
    z=True,
    bias=True,
    softplus=True,
    seed=0,
):
    """Random inputs in mamba's ranges: A = -exp(randn) < 0, step sizes of softplus scale."""
    generator = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    # With softplus the raw steps sit around -1 (softplus ~ 0.3); without, they are such steps already.
    raw = 0.5 * randn(batch, dim, length) - 1.0
    inputs = dict(
        u=randn(batch, dim, length).to(dtype),
        delta=(raw if softplus else F.softplus(raw)).to(dtype),
        A=-torch.exp(randn(dim, n)).float(),
        B=randn(*bc_shape(B, batch, dim, n, length)).to(bc_dtype or dtype),
        C=randn(*bc_shape(C, batch, dim, n, length)).to(bc_dtype or dtype),
        D=randn(dim).float() if D else None,
        z=randn(batch, dim, length).to(dtype) if z else None,
        delta_bias=(0.5 * randn(dim) - 0.25).float() if bias else None,
    )
    return {name: None if value is None else value.to(DEVICE) for name, value in inputs.items()}


def run(scan, inputs, softplus, return_last_state, grad_seed=7, dtype64=False):
    """Output, last state (or None) and the gradient of every tensor input under a random dout."""
    leaves = {
        name: (value.detach().double() if dtype64 else value.detach().clone()).requires_grad_()
        for name, value in inputs.items()
        if value is not None
    }
    result = scan(**{**inputs, **leaves}, delta_softplus=softplus, return_last_state=return_last_state)
    out, last = result if return_last_state else (result, None)
    # dout in the inputs' dtype, so that a float64 run sees exactly the values a half-precision one does.
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed)).to(inputs["u"].dtype)
    grads = torch.autograd.grad(out, list(leaves.values()), dout.to(out.device, out.dtype))
    return out, last, dict(zip(leaves, grads)), leaves


def check_against_definition(
    inputs, softplus, return_last_state=True, scan=selective_scan, of_scale=FP32_OF_SCALE, in_float64=False
):
    out, last, grads, leaves = run(scan, inputs, softplus, return_last_state, dtype64=in_float64)
    expected, expected_last, expected_grads, _ = run(selective_scan_sequential, inputs, softplus, True, dtype64=True)
    assert out.dtype == leaves["u"].dtype
    assert_matches(out, expected, of_scale, "out", rtol=ROUNDING.get(out.dtype, 0.0))
    if return_last_state:
        assert last.dtype == (torch.float64 if in_float64 else torch.float32)
        assert last.shape == (inputs["u"].shape[0], inputs["u"].shape[1], inputs["A"].shape[1])
        assert not last.requires_grad
        assert_matches(last, expected_last, of_scale, "last_state", rtol=ROUNDING.get(last.dtype, 0.0))
    for name, grad in grads.items():
        assert grad.dtype == leaves[name].dtype, f"d{name}: dtype {grad.dtype} != {leaves[name].dtype}"
        assert_matches(grad, expected_grads[name], of_scale, f"d{name}", rtol=ROUNDING.get(grad.dtype, 0.0))


# A handful of combined configurations rather than the product: every option is on and off
# somewhere, each length (1, 7, 129, 300) and each B/C layout appears, B and C in different
# layouts, in both dtypes the interpreter computes right. d=6 with G=2 gives 3-channel groups
# (one-channel blocks); N=5 is padded to 8 inside the kernel.
CONFIGS = {
    "batch-everything-on": dict(batch=2, dim=4, n=4, length=300),
    "shared-everything-off": dict(
        batch=1,
        dim=4,
        n=4,
        length=129,
        B="shared",
        C="shared",
        D=False,
        z=False,
        bias=False,
        softplus=False,
        last=False,
    ),
    "grouped-no-z": dict(batch=1, dim=4, n=16, length=129, B="group", C="group", z=False),
    "shared-B-grouped-C": dict(batch=2, dim=6, n=16, length=7, B="shared", C="group", D=False, bias=False),
    "single-step": dict(batch=2, dim=8, n=16, length=1, B="group", C="batch", softplus=False),
    "state-not-power-of-two": dict(batch=1, dim=4, n=5, length=7, B="batch", C="shared", z=False, last=False),
}
HALF_CONFIGS = {
    "batch-everything-on": dict(batch=2, dim=4, n=4, length=129),
    "grouped-no-z-no-bias": dict(
        batch=1, dim=4, n=4, length=300, B="group", C="group", z=False, bias=False, last=False
    ),
    "shared-no-D-no-softplus": dict(batch=2, dim=8, n=16, length=7, B="shared", C="shared", D=False, softplus=False),
    "float32-B-and-C": dict(batch=1, dim=4, n=4, length=7, B="batch", C="group", bc_dtype=torch.float32),
}


def split(config):
    options = dict(config)
    return options.pop("softplus", True), options.pop("last", True), options


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fp32_matches_definition(name):
    softplus, last, options = split(CONFIGS[name])
    check_against_definition(make_inputs(**options, softplus=softplus), softplus, last)


@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=pytest.mark.gpu)])
@pytest.mark.parametrize("name", list(HALF_CONFIGS))
def test_half_precision_matches_definition(name, dtype):
    softplus, last, options = split(HALF_CONFIGS[name])
    check_against_definition(make_inputs(dtype=dtype, **options, softplus=softplus, seed=1), softplus, last)


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["shared", "batch", "group"])
def test_long_sequences_on_gpu(layout):
    inputs = make_inputs(batch=2, dim=64, n=16, length=4099, B=layout, C=layout, seed=2)
    check_against_definition(inputs, softplus=True)


def test_softplus_passes_large_steps_through():
    # Far above the threshold, where log(1 + exp(delta)) would overflow float32 to inf.
    inputs = make_inputs(batch=1, dim=4, n=4, length=20, bias=False, seed=3)
    generator = torch.Generator().manual_seed(4)
    inputs["delta"] = (20.5 + 80 * torch.rand(inputs["delta"].shape, generator=generator)).to(DEVICE)
    inputs["A"] = inputs["A"] * 0.01  # keep exp(delta * A) from underflowing everywhere
    check_against_definition(inputs, softplus=True)
    out, last, grads, _ = run(selective_scan, inputs, True, True)
    out_plain, last_plain, grads_plain, _ = run(selective_scan, inputs, False, True)
    # Passed through: the same as the raw steps without softplus (bitwise in the interpreter).
    torch.testing.assert_close(out, out_plain)
    torch.testing.assert_close(last, last_plain)
    for name in grads:
        torch.testing.assert_close(grads[name], grads_plain[name], msg=lambda m, name=name: f"d{name}: {m}")


def test_softplus_threshold_applies_after_the_bias():
    # Raw steps near 24 and near -1, moved by per-channel biases: above 20 (passed through),
    # near 3 (where softplus visibly bends them), near 0, and far below 0.
    inputs = make_inputs(batch=1, dim=4, n=4, length=16, seed=5)
    inputs["delta"][..., ::2] += 25.0
    inputs["delta_bias"] = torch.tensor([-10.0, 0.0, 4.0, -30.0], device=DEVICE)
    inputs["A"] = inputs["A"] * 0.01
    check_against_definition(inputs, softplus=True)


def test_last_state_carries_no_gradient():
    inputs = make_inputs(batch=1, dim=2, n=4, length=7, seed=6)
    u = inputs["u"].clone().requires_grad_()
    out, last = selective_scan(**{**inputs, "u": u}, return_last_state=True)
    assert out.requires_grad and not last.requires_grad and last.grad_fn is None
    assert selective_scan(**inputs).shape == inputs["u"].shape  # return_last_state=False: out alone


def test_non_contiguous_inputs():
    inputs = make_inputs(batch=2, dim=4, n=4, length=7, B="batch", C="shared", seed=8)
    for name in ("u", "z", "B"):
        inputs[name] = inputs[name].transpose(-1, -2).contiguous().transpose(-1, -2)
    inputs["A"] = inputs["A"].t().contiguous().t()
    inputs["C"] = inputs["C"].t().contiguous().t()
    assert not any(inputs[name].is_contiguous() for name in ("u", "z", "B", "A", "C"))
    check_against_definition(inputs, softplus=True)


def test_empty_sequence():
    inputs = make_inputs(batch=2, dim=4, n=4, length=0, seed=9)
    out, last, grads, leaves = run(selective_scan, inputs, True, True)
    assert out.shape == (2, 4, 0) and torch.equal(last, torch.zeros(2, 4, 4, device=DEVICE))
    assert all(grads[name].shape == leaves[name].shape for name in grads)
    assert torch.equal(grads["A"], torch.zeros_like(grads["A"]))


@pytest.mark.parametrize(
    "B, C, length, chunk_size",
    [("shared", "shared", 129, None), ("batch", "group", 300, None), ("group", "batch", 37, 8)],
)
def test_vectorized_reference_matches_definition(B, C, length, chunk_size):
    inputs = make_inputs(batch=2, dim=4, n=4, length=length, B=B, C=C, seed=10)

    def reference(**kwargs):
        return selective_scan_reference(**kwargs, chunk_size=chunk_size)

    check_against_definition(inputs, softplus=True, scan=reference, of_scale=FLOAT64_OF_SCALE, in_float64=True)


def test_vectorized_reference_in_float32():
    inputs = make_inputs(batch=1, dim=4, n=16, length=300, B="group", C="shared", seed=11)
    check_against_definition(inputs, softplus=True, scan=selective_scan_reference)


def test_vectorized_reference_with_options_off():
    inputs = make_inputs(batch=1, dim=2, n=4, length=70, D=False, z=False, bias=False, softplus=False, seed=12)
    check_against_definition(
        inputs,
        softplus=False,
        return_last_state=False,
        scan=selective_scan_reference,
        of_scale=FLOAT64_OF_SCALE,
        in_float64=True,
    )


def _inputs_with(**changes):
    inputs = make_inputs(batch=2, dim=6, n=4, length=9, seed=13)
    inputs.update(
        {
            name: value.to(DEVICE) if isinstance(value, torch.Tensor) and value.device.type != "meta" else value
            for name, value in changes.items()
        }
    )
    return inputs


@pytest.mark.parametrize(
    "changes, error, message",
    [
        (dict(u=torch.randn(2, 6)), ValueError, r"u: expected shape \(batch, dim, L\)"),
        (dict(delta=torch.rand(2, 6, 8)), ValueError, r"delta: expected the shape of u \(2, 6, 9\)"),
        (dict(z=torch.randn(2, 5, 9)), ValueError, "z: expected the shape of u"),
        (dict(A=-torch.rand(6)), ValueError, r"A: expected shape \(dim, N\)"),
        (dict(A=-torch.rand(5, 4)), ValueError, r"A: expected shape \(dim, N\) with dim = 6"),
        (dict(A=-torch.rand(6, 300)), ValueError, "A: the state size N must be between 1 and 256"),
        (dict(B=torch.randn(6, 5)), ValueError, r"B: expected \(dim, N\) = \(6, 4\)"),
        (dict(C=torch.randn(2, 4, 8)), ValueError, r"C: expected .*\(batch, N, L\) = \(2, 4, 9\)"),
        (dict(B=torch.randn(2, 4, 4, 9)), ValueError, "B: dim 6 is not divisible by its number of groups G = 4"),
        (dict(D=torch.randn(5)), ValueError, r"D: expected shape \(6,\)"),
        (dict(delta_bias=torch.randn(6, 1)), ValueError, r"delta_bias: expected shape \(6,\)"),
        (dict(u=torch.randint(0, 3, (2, 6, 9))), TypeError, "u: expected float32, float16 or bfloat16"),
        (dict(C=torch.randn(2, 4, 9).double()), TypeError, "C: expected float32, float16 or bfloat16"),
        (dict(A=-torch.rand(6, 4).double()), TypeError, "A: expected float32, got torch.float64"),
        (dict(D=torch.randn(6).half()), TypeError, "D: expected float32"),
        (dict(delta_bias=torch.randn(6).to(torch.bfloat16)), TypeError, "delta_bias: expected float32"),
        (dict(B=[[1.0]]), TypeError, "B: expected a torch.Tensor, got list"),
        (dict(z=torch.randn(2, 6, 9, device="meta")), ValueError, "z: expected the device of u"),
    ],
)
def test_bad_inputs_raise_clear_errors(changes, error, message):
    with pytest.raises(error, match=message):
        selective_scan(**_inputs_with(**changes))
