import pytest
import torch

import menagerie.kernels  # noqa: F401  (switches Triton to its interpreter when there is no GPU)
from menagerie.kernels.ssm.ssd import ssd_scan
from menagerie.kernels.ssm.ssd_reference import ssd_chunked_reference
from tests.ssm.helpers import (
    DEVICE,
    SSD_CHUNK,
    SSD_FLOAT64_OF_SCALE,
    check_against_recurrence,
    ssd_gradients,
    ssd_inputs,
)

# Combined configurations rather than the product: lengths 1, 7, chunk - 1, chunk + 1 and
# several chunks; G in {1, 2} with two heads per group; D per head, per channel and off; z,
# dt_bias, softplus and initial states on and off; final states returned or not. Chunk 32
# takes 32-step row blocks against 16-step column blocks, and P = 32 two P blocks; chunk 64 is
# ssd_scan's default. P = 12 and N = 24 are padded inside; N = 24 takes two steps of the loops
# over states (16 at a time under the interpreter).
CONFIGS = {
    "length-1": dict(length=1),
    "length-7-options-off": dict(
        length=7, heads=4, groups=2, D=None, z=False, bias=False, softplus=False, initial=False, final=False
    ),
    "chunk-minus-1": dict(length=SSD_CHUNK - 1, D="channel", bias=False, dstate=16),
    "chunk-plus-1": dict(batch=2, length=SSD_CHUNK + 1, heads=4, groups=2, head_dim=12, z=False, softplus=False),
    "several-chunks": dict(batch=2, length=3 * SSD_CHUNK + 5, heads=4, groups=2, D="channel", head_dim=16, dstate=24),
    "chunk-32-wide-heads": dict(length=70, head_dim=32, dstate=16, initial=False, chunk_size=32),
    "default-chunk-64": dict(length=2 * 64 + 3, chunk_size=64),
}
HALF_CONFIGS = {
    "several-chunks": dict(batch=2, length=2 * SSD_CHUNK + 3, heads=4, groups=2),
    "options-off": dict(length=SSD_CHUNK + 1, D=None, z=False, bias=False, softplus=False, dstate=16),
}


def split(config):
    options = dict(config)
    return (
        options.pop("softplus", True),
        options.pop("final", True),
        {"chunk_size": options.pop("chunk_size", SSD_CHUNK)},
        options,
    )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fp32_matches_recurrence(name):
    softplus, final, scan_options, options = split(CONFIGS[name])
    check_against_recurrence(ssd_inputs(**options, softplus=softplus), softplus, final, **scan_options)


@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=pytest.mark.gpu)])
@pytest.mark.parametrize("name", list(HALF_CONFIGS))
def test_half_precision_matches_recurrence(name, dtype):
    softplus, final, scan_options, options = split(HALF_CONFIGS[name])
    check_against_recurrence(
        ssd_inputs(**options, softplus=softplus, dtype=dtype, seed=1), softplus, final, **scan_options
    )


def test_bfloat16_runs_with_the_right_shapes_and_dtypes():
    # The CPU interpreter's bf16 arithmetic is wrong: values are checked on a GPU (above) only.
    inputs = ssd_inputs(length=SSD_CHUNK + 3, dtype=torch.bfloat16, seed=2)
    y, final, grads, leaves = ssd_gradients(ssd_scan, inputs, softplus=True, chunk_size=SSD_CHUNK)
    assert y.shape == inputs["x"].shape and y.dtype == torch.bfloat16
    assert final.shape == inputs["initial_states"].shape and final.dtype == torch.float32
    for name, grad in grads.items():
        assert grad.shape == leaves[name].shape and grad.dtype == leaves[name].dtype, name


def test_non_contiguous_inputs():
    inputs = ssd_inputs(length=9, heads=4, groups=2, D="channel", seed=3)
    for name in ("x", "B", "z", "initial_states"):
        inputs[name] = inputs[name].transpose(-1, -2).contiguous().transpose(-1, -2)
    inputs["dt"] = inputs["dt"].transpose(0, 1).contiguous().transpose(0, 1)
    inputs["D"] = inputs["D"].t().contiguous().t()
    assert not any(inputs[name].is_contiguous() for name in ("x", "B", "z", "initial_states", "D"))
    check_against_recurrence(inputs, softplus=True, chunk_size=SSD_CHUNK)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, chunk_size", [(torch.float32, 64), (torch.float16, 256), (torch.bfloat16, 256)])
def test_long_sequences_on_gpu(dtype, chunk_size):
    inputs = ssd_inputs(batch=2, length=1000, heads=8, head_dim=64, groups=2, dstate=128, dtype=dtype, seed=4)
    check_against_recurrence(inputs, softplus=True, chunk_size=chunk_size)


@pytest.mark.parametrize("length, groups, D", [(1, 1, "head"), (7, 2, "channel"), (2 * SSD_CHUNK + 1, 2, None)])
def test_chunked_reference_matches_recurrence_in_float64(length, groups, D):
    inputs = ssd_inputs(batch=2, length=length, heads=4, groups=groups, D=D, seed=5)
    check_against_recurrence(
        inputs,
        softplus=True,
        scan=ssd_chunked_reference,
        of_scale=SSD_FLOAT64_OF_SCALE,
        in_float64=True,
        chunk_size=SSD_CHUNK,
    )


def test_chunked_reference_with_options_off_in_float32():
    inputs = ssd_inputs(length=3 * SSD_CHUNK - 2, D=None, z=False, bias=False, softplus=False, initial=False, seed=6)
    check_against_recurrence(inputs, softplus=False, scan=ssd_chunked_reference, chunk_size=SSD_CHUNK)


def _inputs_with(**changes):
    inputs = ssd_inputs(length=9, heads=4, groups=2, seed=8)
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
        (dict(x=torch.randn(1, 9, 32)), ValueError, r"x: expected shape \(batch, L, heads, P\)"),
        (
            dict(
                x=torch.randn(1, 0, 4, 8),
                dt=torch.randn(1, 0, 4),
                B=torch.randn(1, 0, 2, 8),
                C=torch.randn(1, 0, 2, 8),
                z=None,
            ),
            ValueError,
            "x: expected a sequence of at least one step",
        ),
        (
            dict(B=torch.randn(1, 9, 3, 8), C=torch.randn(1, 9, 3, 8)),
            ValueError,
            r"B: the number of heads \(4\) must be divisible by the number of groups G, got G = 3",
        ),
        (dict(B=torch.randn(1, 9, 8)), ValueError, r"B: expected shape \(batch, L, G, N\)"),
        (dict(C=torch.randn(1, 9, 2, 4)), ValueError, r"C: expected shape \(1, 9, 2, 8\), got \(1, 9, 2, 4\)"),
        (dict(dt=torch.randn(1, 9, 2)), ValueError, r"dt: expected shape \(1, 9, 4\)"),
        (dict(A=-torch.rand(4, 8)), ValueError, r"A: expected shape \(4,\)"),
        (dict(D=torch.randn(5)), ValueError, r"D: expected shape \(4,\) or \(4, 8\), got \(5,\)"),
        (dict(D=torch.randn(4, 7)), ValueError, r"D: expected shape \(4,\) or \(4, 8\), got \(4, 7\)"),
        (dict(z=torch.randn(1, 9, 4, 7)), ValueError, r"z: expected shape \(1, 9, 4, 8\)"),
        (dict(dt_bias=torch.randn(4, 1)), ValueError, r"dt_bias: expected shape \(4,\)"),
        (dict(initial_states=torch.randn(1, 4, 8, 7)), ValueError, r"initial_states: expected shape \(1, 4, 8, 8\)"),
        (dict(x=torch.randint(0, 3, (1, 9, 4, 8))), TypeError, "x: expected float32, float16 or bfloat16"),
        (dict(B=torch.randn(1, 9, 2, 8).double()), TypeError, "B: expected float32, float16 or bfloat16"),
        (dict(C=[[1.0]]), TypeError, "C: expected a torch.Tensor, got list"),
        (dict(chunk_size=24), ValueError, r"chunk_size: expected a power of two >= 16, got 24"),
        (dict(chunk_size=8), ValueError, r"chunk_size: expected a power of two >= 16, got 8"),
        (dict(chunk_size=16.0), ValueError, r"chunk_size: expected a power of two >= 16, got 16.0"),
        (dict(z=torch.randn(1, 9, 4, 8, device="meta")), ValueError, "z: expected the device of x"),
    ],
)
def test_bad_inputs_raise_clear_errors(changes, error, message):
    with pytest.raises(error, match=message):
        ssd_scan(**_inputs_with(**changes))
