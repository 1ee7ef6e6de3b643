"""Shared by the SSM scan tests: the device, a comparison at a tolerance from the dtype, and random SSD problems
with the float64 recurrence to check them against."""

import torch

from menagerie.kernels.ssm.ssd import ssd_scan
from menagerie.kernels.ssm.ssd_reference import ssd_recurrence_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def assert_matches(actual, expected, of_scale, name, rtol=0.0):
    """|actual - expected| <= of_scale * max|expected| + rtol * |expected|, and the same shape."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    scale = expected.abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(
        actual.double(), expected.double(), atol=of_scale * scale + 1e-30, rtol=rtol, msg=lambda m: f"{name}: {m}"
    )


# Tolerances as a fraction of the expected result's largest magnitude. fp32: sums of up to
# L*N*P float32 products and decays with a float32 state; 1e-4 is ~1000 float32 epsilons.
# fp16: the matmul operands (inputs, decay-weighted tiles, the entering states) are rounded to
# fp16 before float32 accumulation: a few fp16 roundings (2**-11 each) of the largest terms.
SSD_OF_SCALE = {torch.float32: 1e-4, torch.float16: 4 * 2.0**-11, torch.bfloat16: 4 * 2.0**-8}
SSD_FLOAT64_OF_SCALE = 1e-11  # the chunked reference in float64 against the recurrence in float64
SSD_CHUNK = 16
# Tensors in the activations' dtype; A, D, dt_bias and the initial states stay float32, as in a
# Mamba-2 layer with half-precision activations.
SSD_ACTIVATIONS = ("x", "dt", "B", "C", "z")


def ssd_inputs(
    *,
    batch=1,
    length,
    heads=2,
    head_dim=8,
    groups=1,
    dstate=8,
    dtype=torch.float32,
    D="head",
    z=True,
    bias=True,
    softplus=True,
    initial=True,
    seed=0,
):
    """Random inputs in Mamba-2's ranges: A = -exp(randn) < 0, step sizes of softplus scale."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    raw = 0.5 * randn(batch, length, heads) - 1.0  # softplus(-1) ~ 0.3
    inputs = dict(
        x=randn(batch, length, heads, head_dim),
        dt=raw if softplus else torch.nn.functional.softplus(raw),
        A=-torch.exp(randn(heads)),
        B=randn(batch, length, groups, dstate),
        C=randn(batch, length, groups, dstate),
        D={"head": randn(heads), "channel": randn(heads, head_dim), None: None}[D],
        z=randn(batch, length, heads, head_dim) if z else None,
        dt_bias=0.5 * randn(heads) - 0.25 if bias else None,
        initial_states=randn(batch, heads, head_dim, dstate) if initial else None,
    )
    return {
        name: None if value is None else value.to(DEVICE, dtype if name in SSD_ACTIVATIONS else torch.float32)
        for name, value in inputs.items()
    }


def ssd_gradients(scan, inputs, softplus, return_final_states=True, in_float64=False, **options):
    """y, the final states (or None) and every input's gradient under random output gradients."""
    leaves = {
        name: (value.double() if in_float64 else value).detach().clone().requires_grad_()
        for name, value in inputs.items()
        if value is not None
    }
    result = scan(**{**inputs, **leaves}, dt_softplus=softplus, return_final_states=return_final_states, **options)
    y, final = result if return_final_states else (result, None)
    generator = torch.Generator().manual_seed(7)
    # Output gradients in the inputs' dtype, so that a float64 run sees exactly what a half one does.
    outputs = [y] + ([final] if return_final_states else [])
    cotangents = [
        torch.randn(out.shape, generator=generator).to(inputs["x"].dtype).to(out.device, out.dtype) for out in outputs
    ]
    grads = torch.autograd.grad(outputs, list(leaves.values()), cotangents)
    return y, final, dict(zip(leaves, grads)), leaves


def check_against_recurrence(
    inputs, softplus, return_final_states=True, scan=ssd_scan, of_scale=None, in_float64=False, **options
):
    y, final, grads, leaves = ssd_gradients(scan, inputs, softplus, return_final_states, in_float64, **options)
    expected, expected_final, expected_grads, _ = ssd_gradients(
        ssd_recurrence_reference, inputs, softplus, return_final_states, in_float64=True
    )
    of_scale = of_scale or SSD_OF_SCALE[inputs["x"].dtype]
    assert y.dtype == leaves["x"].dtype
    assert_matches(y, expected, of_scale, "y")
    if return_final_states:
        assert final.dtype == (torch.float64 if in_float64 else torch.float32)
        assert_matches(final, expected_final, of_scale, "final_states")
    for name, grad in grads.items():
        assert grad.dtype == leaves[name].dtype, f"d{name}: dtype {grad.dtype} != {leaves[name].dtype}"
        assert_matches(grad, expected_grads[name], of_scale, f"d{name}")
