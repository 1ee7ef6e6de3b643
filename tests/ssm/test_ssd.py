import pytest
import torch

import menagerie.kernels  # noqa: F401  (switches Triton to its interpreter when there is no GPU)
from menagerie.kernels.ssm.ssd import ssd_scan
from menagerie.kernels.ssm.ssd_reference import ssd_chunked_reference, ssd_recurrence_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# Tolerances as a fraction of the expected result's largest magnitude. fp32: sums of up to
# L*N*P float32 products and decays with a float32 state; 1e-4 is ~1000 float32 epsilons.
# fp16: the matmul operands (inputs, decay-weighted tiles, the entering states) are rounded to
# fp16 before float32 accumulation: a few fp16 roundings (2**-11 each) of the largest terms.
OF_SCALE = {torch.float32: 1e-4, torch.float16: 4 * 2.0 ** -11, torch.bfloat16: 4 * 2.0 ** -8}
FLOAT64_OF_SCALE = 1e-11  # the chunked reference in float64 against the recurrence in float64
CHUNK = 16
# Tensors in the activations' dtype; A, D, dt_bias and the initial states stay float32, as in a
# Mamba-2 layer with half-precision activations.
ACTIVATIONS = ("x", "dt", "B", "C", "z")


def make_inputs(*, batch=1, length, heads=2, head_dim=8, groups=1, dstate=8, dtype=torch.float32, D="head",
                z=True, bias=True, softplus=True, initial=True, seed=0):
    """Random inputs in Mamba-2's ranges: A = -exp(randn) < 0, step sizes of softplus scale."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)
    raw = 0.5 * randn(batch, length, heads) - 1.0  # softplus(-1) ~ 0.3
    inputs = dict(
        x=randn(batch, length, heads, head_dim), dt=raw if softplus else torch.nn.functional.softplus(raw),
        A=-torch.exp(randn(heads)), B=randn(batch, length, groups, dstate), C=randn(batch, length, groups, dstate),
        D={"head": randn(heads), "channel": randn(heads, head_dim), None: None}[D],
        z=randn(batch, length, heads, head_dim) if z else None, dt_bias=0.5 * randn(heads) - 0.25 if bias else None,
        initial_states=randn(batch, heads, head_dim, dstate) if initial else None)
    return {name: None if value is None else value.to(DEVICE, dtype if name in ACTIVATIONS else torch.float32)
            for name, value in inputs.items()}


def run(scan, inputs, softplus, return_final_states=True, in_float64=False, **options):
    """y, the final states (or None) and every input's gradient under random output gradients."""
    leaves = {name: (value.double() if in_float64 else value).detach().clone().requires_grad_()
              for name, value in inputs.items() if value is not None}
    result = scan(**{**inputs, **leaves}, dt_softplus=softplus, return_final_states=return_final_states, **options)
    y, final = result if return_final_states else (result, None)
    generator = torch.Generator().manual_seed(7)
    # Output gradients in the inputs' dtype, so that a float64 run sees exactly what a half one does.
    outputs = [y] + ([final] if return_final_states else [])
    cotangents = [torch.randn(out.shape, generator=generator).to(inputs["x"].dtype).to(out.device, out.dtype)
                  for out in outputs]
    grads = torch.autograd.grad(outputs, list(leaves.values()), cotangents)
    return y, final, dict(zip(leaves, grads)), leaves


def assert_matches(actual, expected, of_scale, name):
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    atol = of_scale * expected.abs().max().item() + 1e-30
    torch.testing.assert_close(actual.double(), expected.double(), atol=atol, rtol=0.0, msg=lambda m: f"{name}: {m}")


def check_against_recurrence(inputs, softplus, return_final_states=True, scan=ssd_scan, of_scale=None,
                             in_float64=False, **options):
    y, final, grads, leaves = run(scan, inputs, softplus, return_final_states, in_float64, **options)
    expected, expected_final, expected_grads, _ = run(ssd_recurrence_reference, inputs, softplus,
                                                      return_final_states, in_float64=True)
    of_scale = of_scale or OF_SCALE[inputs["x"].dtype]
    assert y.dtype == leaves["x"].dtype
    assert_matches(y, expected, of_scale, "y")
    if return_final_states:
        assert final.dtype == (torch.float64 if in_float64 else torch.float32)
        assert_matches(final, expected_final, of_scale, "final_states")
    for name, grad in grads.items():
        assert grad.dtype == leaves[name].dtype, f"d{name}: dtype {grad.dtype} != {leaves[name].dtype}"
        assert_matches(grad, expected_grads[name], of_scale, f"d{name}")


# Combined configurations rather than the product: lengths 1, 7, chunk - 1, chunk + 1 and
# several chunks; G in {1, 2} with two heads per group; D per head, per channel and off; z,
# dt_bias, softplus and initial states on and off; final states returned or not. Chunk 32
# takes 32-step row blocks against 16-step column blocks, and P = 32 two P blocks; chunk 64 is
# ssd_scan's default. P = 12 and N = 24 are padded inside; N = 24 takes two steps of the loops
# over states (16 at a time under the interpreter).
CONFIGS = {
    "length-1": dict(length=1),
    "length-7-options-off": dict(length=7, heads=4, groups=2, D=None, z=False, bias=False, softplus=False,
                                 initial=False, final=False),
    "chunk-minus-1": dict(length=CHUNK - 1, D="channel", bias=False, dstate=16),
    "chunk-plus-1": dict(batch=2, length=CHUNK + 1, heads=4, groups=2, head_dim=12, z=False, softplus=False),
    "several-chunks": dict(batch=2, length=3 * CHUNK + 5, heads=4, groups=2, D="channel", head_dim=16, dstate=24),
    "chunk-32-wide-heads": dict(length=70, head_dim=32, dstate=16, initial=False, chunk_size=32),
    "default-chunk-64": dict(length=2 * 64 + 3, chunk_size=64),
}
HALF_CONFIGS = {
    "several-chunks": dict(batch=2, length=2 * CHUNK + 3, heads=4, groups=2),
    "options-off": dict(length=CHUNK + 1, D=None, z=False, bias=False, softplus=False, dstate=16),
}


def split(config):
    options = dict(config)
    return (options.pop("softplus", True), options.pop("final", True),
            {"chunk_size": options.pop("chunk_size", CHUNK)}, options)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fp32_matches_recurrence(name):
    softplus, final, scan_options, options = split(CONFIGS[name])
    check_against_recurrence(make_inputs(**options, softplus=softplus), softplus, final, **scan_options)


@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=pytest.mark.gpu)])
@pytest.mark.parametrize("name", list(HALF_CONFIGS))
def test_half_precision_matches_recurrence(name, dtype):
    softplus, final, scan_options, options = split(HALF_CONFIGS[name])
    check_against_recurrence(make_inputs(**options, softplus=softplus, dtype=dtype, seed=1), softplus, final,
                             **scan_options)


def test_bfloat16_runs_with_the_right_shapes_and_dtypes():
    # The CPU interpreter's bf16 arithmetic is wrong: values are checked on a GPU (above) only.
    inputs = make_inputs(length=CHUNK + 3, dtype=torch.bfloat16, seed=2)
    y, final, grads, leaves = run(ssd_scan, inputs, softplus=True, chunk_size=CHUNK)
    assert y.shape == inputs["x"].shape and y.dtype == torch.bfloat16
    assert final.shape == inputs["initial_states"].shape and final.dtype == torch.float32
    for name, grad in grads.items():
        assert grad.shape == leaves[name].shape and grad.dtype == leaves[name].dtype, name


def test_non_contiguous_inputs():
    inputs = make_inputs(length=9, heads=4, groups=2, D="channel", seed=3)
    for name in ("x", "B", "z", "initial_states"):
        inputs[name] = inputs[name].transpose(-1, -2).contiguous().transpose(-1, -2)
    inputs["dt"] = inputs["dt"].transpose(0, 1).contiguous().transpose(0, 1)
    inputs["D"] = inputs["D"].t().contiguous().t()
    assert not any(inputs[name].is_contiguous() for name in ("x", "B", "z", "initial_states", "D"))
    check_against_recurrence(inputs, softplus=True, chunk_size=CHUNK)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, chunk_size", [(torch.float32, 64), (torch.float16, 256), (torch.bfloat16, 256)])
def test_long_sequences_on_gpu(dtype, chunk_size):
    inputs = make_inputs(batch=2, length=1000, heads=8, head_dim=64, groups=2, dstate=128, dtype=dtype, seed=4)
    check_against_recurrence(inputs, softplus=True, chunk_size=chunk_size)


@pytest.mark.parametrize("length, groups, D", [(1, 1, "head"), (7, 2, "channel"), (2 * CHUNK + 1, 2, None)])
def test_chunked_reference_matches_recurrence_in_float64(length, groups, D):
    inputs = make_inputs(batch=2, length=length, heads=4, groups=groups, D=D, seed=5)
    check_against_recurrence(inputs, softplus=True, scan=ssd_chunked_reference, of_scale=FLOAT64_OF_SCALE,
                             in_float64=True, chunk_size=CHUNK)


def test_chunked_reference_with_options_off_in_float32():
    inputs = make_inputs(length=3 * CHUNK - 2, D=None, z=False, bias=False, softplus=False, initial=False, seed=6)
    check_against_recurrence(inputs, softplus=False, scan=ssd_chunked_reference, chunk_size=CHUNK)


def _inputs_with(**changes):
    inputs = make_inputs(length=9, heads=4, groups=2, seed=8)
    inputs.update({name: value.to(DEVICE) if isinstance(value, torch.Tensor) and value.device.type != "meta"
                   else value for name, value in changes.items()})
    return inputs


@pytest.mark.parametrize("changes, error, message", [
    (dict(x=torch.randn(1, 9, 32)), ValueError, r"x: expected shape \(batch, L, heads, P\)"),
    (dict(x=torch.randn(1, 0, 4, 8), dt=torch.randn(1, 0, 4), B=torch.randn(1, 0, 2, 8), C=torch.randn(1, 0, 2, 8),
          z=None), ValueError, "x: expected a sequence of at least one step"),
    (dict(B=torch.randn(1, 9, 3, 8), C=torch.randn(1, 9, 3, 8)), ValueError,
     r"B: the number of heads \(4\) must be divisible by the number of groups G, got G = 3"),
    (dict(B=torch.randn(1, 9, 8)), ValueError, r"B: expected shape \(batch, L, G, N\)"),
    (dict(C=torch.randn(1, 9, 2, 4)), ValueError, r"C: expected shape \(1, 9, 2, 8\), got \(1, 9, 2, 4\)"),
    (dict(dt=torch.randn(1, 9, 2)), ValueError, r"dt: expected shape \(1, 9, 4\)"),
    (dict(A=-torch.rand(4, 8)), ValueError, r"A: expected shape \(4,\)"),
    (dict(D=torch.randn(5)), ValueError, r"D: expected shape \(4,\) or \(4, 8\), got \(5,\)"),
    (dict(D=torch.randn(4, 7)), ValueError, r"D: expected shape \(4,\) or \(4, 8\), got \(4, 7\)"),
    (dict(z=torch.randn(1, 9, 4, 7)), ValueError, r"z: expected shape \(1, 9, 4, 8\)"),
    (dict(dt_bias=torch.randn(4, 1)), ValueError, r"dt_bias: expected shape \(4,\)"),
    (dict(initial_states=torch.randn(1, 4, 8, 7)), ValueError, r"initial_states: expected shape \(1, 4, 8, 8\)"),
    (dict(x=torch.randint(0, 3, (1, 9, 4, 8))), TypeError, "x: expected dtype float32, float16 or bfloat16"),
    (dict(B=torch.randn(1, 9, 2, 8).double()), TypeError, "B: expected dtype float32, float16 or bfloat16"),
    (dict(C=[[1.0]]), TypeError, "C: expected a torch.Tensor, got list"),
    (dict(chunk_size=24), ValueError, r"chunk_size: expected a power of two >= 16, got 24"),
    (dict(chunk_size=8), ValueError, r"chunk_size: expected a power of two >= 16, got 8"),
    (dict(chunk_size=16.0), ValueError, r"chunk_size: expected a power of two >= 16, got 16.0"),
    (dict(z=torch.randn(1, 9, 4, 8, device="meta")), ValueError, "z: expected the device of x"),
])
def test_bad_inputs_raise_clear_errors(changes, error, message):
    with pytest.raises(error, match=message):
        ssd_scan(**_inputs_with(**changes))
