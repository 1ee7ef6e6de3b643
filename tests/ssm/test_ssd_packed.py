"""The SSD scan over packed sequences (``seq_idx`` / ``cu_seqlens``): no state crosses a boundary."""

import pytest
import torch

from menagerie.kernels.ssm.ssd import ssd_scan
from menagerie.kernels.ssm.ssd_reference import ssd_chunked_reference, ssd_recurrence_reference
from tests.ssm.helpers import DEVICE, SSD_CHUNK, SSD_FLOAT64_OF_SCALE, SSD_OF_SCALE, assert_matches, ssd_inputs


def sequence_ids(lengths, batch=1):
    """``(batch, L)`` ids for sequences of these lengths (a list per batch row, or one list for all)."""
    rows = lengths if isinstance(lengths[0], list) else [lengths] * batch
    return torch.stack([torch.repeat_interleave(torch.arange(len(row)), torch.tensor(row)) for row in rows]).to(
        DEVICE, torch.int32
    )


def gradients(scan, inputs, seq_idx, in_float64=False, cotangents=None, **options):
    """y, the final states and every input's gradient under the output gradients ``cotangents``
    (default: fixed random ones in the inputs' dtype)."""
    leaves = {
        name: (value.double() if in_float64 else value).detach().clone().requires_grad_()
        for name, value in inputs.items()
        if value is not None
    }
    y, final = scan(**leaves, dt_softplus=True, return_final_states=True, seq_idx=seq_idx, **options)
    if cotangents is None:
        generator = torch.Generator().manual_seed(3)
        cotangents = [torch.randn(out.shape, generator=generator).to(inputs["x"].dtype) for out in (y, final)]
    cotangents = [grad.to(out.device, out.dtype) for grad, out in zip(cotangents, (y, final))]
    return y, final, dict(zip(leaves, torch.autograd.grad((y, final), list(leaves.values()), cotangents)))


def check(inputs, seq_idx, scan=ssd_scan, of_scale=None, in_float64=False, **options):
    y, final, grads = gradients(scan, inputs, seq_idx, in_float64, **options)
    expected, expected_final, expected_grads = gradients(ssd_recurrence_reference, inputs, seq_idx, in_float64=True)
    of_scale = of_scale or SSD_OF_SCALE[inputs["x"].dtype]
    assert_matches(y, expected, of_scale, "y")
    assert_matches(final, expected_final, of_scale, "final_states")
    for name, grad in grads.items():
        assert_matches(grad, expected_grads[name], of_scale, f"d{name}")


# Sequence lengths packed into one row of steps (chunk SSD_CHUNK = 16): boundaries inside a chunk, on
# a chunk's border, several in one chunk, a one-step sequence, a chunk wholly inside a sequence.
PACKINGS = {
    "inside-a-chunk": dict(lengths=[5, 30]),
    "on-a-chunk-border": dict(lengths=[SSD_CHUNK, SSD_CHUNK + 3]),
    "several-in-a-chunk-and-one-step": dict(lengths=[3, 1, 4, 2 * SSD_CHUNK + 1], groups=2, heads=4),
    "rows-differ": dict(lengths=[[7, 2 * SSD_CHUNK], [SSD_CHUNK + 9, 14]], batch=2, D="channel"),
    "one-sequence": dict(lengths=[2 * SSD_CHUNK + 5]),
}


@pytest.mark.parametrize("name", list(PACKINGS))
def test_fp32_matches_the_recurrence_with_resets(name):
    options = dict(PACKINGS[name])
    lengths = options.pop("lengths")
    inputs = ssd_inputs(length=sum(lengths[0] if isinstance(lengths[0], list) else lengths), **options)
    check(inputs, sequence_ids(lengths, options.get("batch", 1)), chunk_size=SSD_CHUNK)


def test_chunk_32_with_wider_tiles():
    lengths = [20, 3, 47]
    check(ssd_inputs(length=sum(lengths), head_dim=32, dstate=16), sequence_ids(lengths), chunk_size=32)


def test_fp16_matches_the_recurrence_with_resets():
    lengths = [9, 2 * SSD_CHUNK]
    check(
        ssd_inputs(length=sum(lengths), dtype=torch.float16, heads=4, groups=2),
        sequence_ids(lengths),
        chunk_size=SSD_CHUNK,
    )


@pytest.mark.parametrize("lengths", [[5, 30], [3, 1, 4, 2 * SSD_CHUNK + 1]])
def test_chunked_reference_matches_the_recurrence_in_float64(lengths):
    check(
        ssd_inputs(length=sum(lengths), groups=2, heads=4),
        sequence_ids(lengths),
        scan=ssd_chunked_reference,
        of_scale=SSD_FLOAT64_OF_SCALE,
        in_float64=True,
        chunk_size=SSD_CHUNK,
    )


def test_packed_equals_each_sequence_on_its_own():
    """The meaning of packing: each sequence's outputs and gradients are those of a separate run
    (the initial states enter the first), and the final states are the last sequence's."""
    lengths = [11, 1, 2 * SSD_CHUNK + 2]
    inputs = ssd_inputs(length=sum(lengths), heads=4, groups=2)
    generator = torch.Generator().manual_seed(5)
    dy, dfinal = torch.randn(inputs["x"].shape, generator=generator), torch.randn((1, 4, 8, 8), generator=generator)
    y, final, grads = gradients(ssd_scan, inputs, sequence_ids(lengths), cotangents=(dy, dfinal), chunk_size=SSD_CHUNK)
    start = 0
    for number, length in enumerate(lengths):
        part = {
            name: (value[:, start : start + length] if name in ("x", "dt", "B", "C", "z") else value)
            for name, value in inputs.items()
        }
        if number:
            part["initial_states"] = None
        last = number == len(lengths) - 1  # only the last sequence's final state is the packed run's
        alone_y, alone_final, alone_grads = gradients(
            ssd_scan,
            part,
            None,
            cotangents=(dy[:, start : start + length], dfinal if last else dfinal * 0),
            chunk_size=SSD_CHUNK,
        )
        assert_matches(y[:, start : start + length], alone_y, SSD_OF_SCALE[torch.float32], f"y of sequence {number}")
        for name in ("x", "dt", "B", "C", "z"):
            assert_matches(
                grads[name][:, start : start + length],
                alone_grads[name],
                SSD_OF_SCALE[torch.float32],
                f"d{name} of sequence {number}",
            )
        start += length
    assert_matches(final, alone_final, SSD_OF_SCALE[torch.float32], "final_states")


def test_cu_seqlens_says_what_seq_idx_says():
    lengths = [4, 0, 21, 6]  # an empty sequence too
    inputs = ssd_inputs(length=sum(lengths))
    cu_seqlens = torch.tensor([0, 4, 4, 25, 31], device=DEVICE, dtype=torch.int32)
    by_ids = ssd_scan(**inputs, dt_softplus=True, chunk_size=SSD_CHUNK, seq_idx=sequence_ids(lengths))
    by_bounds = ssd_scan(**inputs, dt_softplus=True, chunk_size=SSD_CHUNK, cu_seqlens=cu_seqlens)
    both = ssd_scan(
        **inputs, dt_softplus=True, chunk_size=SSD_CHUNK, cu_seqlens=cu_seqlens, seq_idx=sequence_ids(lengths)
    )
    unpacked = ssd_scan(**inputs, dt_softplus=True, chunk_size=SSD_CHUNK)
    assert torch.equal(by_ids, by_bounds) and torch.equal(by_ids, both)
    assert not torch.allclose(by_ids, unpacked)  # the boundaries do change the result


@pytest.mark.parametrize(
    "changes, error, message",
    [
        (dict(seq_idx=torch.zeros(1, 20)), TypeError, "seq_idx: expected an integer dtype"),
        (dict(seq_idx=torch.zeros(1, 19, dtype=torch.int32)), ValueError, r"seq_idx: expected shape \(1, 20\)"),
        (dict(seq_idx=torch.tensor([[0] * 10 + [1] * 5 + [0] * 5])), ValueError, "seq_idx: expected non-decreasing"),
        (dict(seq_idx=[0] * 20), TypeError, "seq_idx: expected a torch.Tensor"),
        (dict(cu_seqlens=torch.tensor([0, 5, 19])), ValueError, r"cu_seqlens: expected \[0, \.\.\., L = 20\]"),
        (dict(cu_seqlens=torch.tensor([0, 12, 5, 20])), ValueError, "cu_seqlens: expected non-decreasing"),
        (
            dict(cu_seqlens=torch.tensor([0, 5, 20]), seq_idx=torch.tensor([[0] * 6 + [1] * 14])),
            ValueError,
            "place the sequence boundaries differently",
        ),
    ],
)
def test_bad_packing_raises_clear_errors(changes, error, message):
    inputs = ssd_inputs(length=20)
    changes = {name: value.to(DEVICE) if isinstance(value, torch.Tensor) else value for name, value in changes.items()}
    with pytest.raises(error, match=message):
        ssd_scan(**inputs, **changes)


def test_cu_seqlens_needs_batch_one():
    with pytest.raises(ValueError, match="cu_seqlens: packed sequences need x with batch 1, got batch 2"):
        ssd_scan(**ssd_inputs(batch=2, length=8), cu_seqlens=torch.tensor([0, 3, 8], device=DEVICE))
