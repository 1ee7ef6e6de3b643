"""Accuracy checks: compare an implementation's outputs with an upcast reference.

``poisoned_allocations`` fills every tensor that ``torch.empty``-like factories
hand out with NaN (floating point) or -1 (integers), so an element that a kernel
forgets to write shows up as NaN or as a wrong index instead of as whatever the
allocator happened to return (often zeros, which can pass by luck).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from menagerie.harness.registry import Tolerance

_EMPTY_OPS = {
    torch.ops.aten.empty.memory_format,
    torch.ops.aten.empty_strided.default,
    torch.ops.aten.empty_like.default,
    torch.ops.aten.new_empty.default,
    torch.ops.aten.new_empty_strided.default,
}


def _poison(tensor: torch.Tensor) -> None:
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex:
        tensor.fill_(float("nan"))
    elif tensor.dtype != torch.bool:
        tensor.fill_(-1)


class _PoisonEmpty(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if func in _EMPTY_OPS and isinstance(result, torch.Tensor) and result.numel():
            _poison(result)
        return result


@contextmanager
def poisoned_allocations():
    with _PoisonEmpty():
        yield


@dataclass
class AccuracyRecord:
    passed: bool
    max_abs_err: float
    rel_l2_err: float
    nan_count: int
    inf_count: int
    mismatched: int  # elements outside the tolerance (or unequal, for integer outputs)
    worst_output: str
    atol: float
    rtol: float
    atol_of_max: float
    seeds: list[int]
    poisoned: bool = True  # whether output allocations were poisoned during the check
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _errors(name: str, out: torch.Tensor, ref: torch.Tensor, tol: Tolerance) -> dict:
    if out.shape != ref.shape:
        raise ValueError(f"output {name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    if not (out.dtype.is_floating_point or ref.dtype.is_floating_point):
        mismatched = int((out.cpu() != ref.cpu()).sum())
        return dict(max_abs=float(mismatched > 0), rel_l2=float(mismatched > 0), nan=0, inf=0, mismatched=mismatched)
    out64, ref64 = out.detach().double().cpu(), ref.detach().double().cpu()
    ref_finite = torch.isfinite(ref64)
    nan = int((torch.isnan(out64) & ~torch.isnan(ref64)).sum())
    inf = int((torch.isinf(out64) & ~torch.isinf(ref64)).sum())
    # Where the reference itself is not finite, the output must match it exactly.
    nonfinite_mismatch = int((~ref_finite & ~((out64 == ref64) | (out64.isnan() & ref64.isnan()))).sum())
    zero = torch.zeros((), dtype=torch.float64)
    diff = (out64 - ref64).abs().where(ref_finite, zero)
    # A NaN never compares as outside a tolerance, so count it there explicitly.
    largest = float(ref64.abs().where(ref_finite, zero).max()) if ref64.numel() else 0.0
    allowed = tol.atol + tol.atol_of_max * largest + tol.rtol * ref64.abs().where(ref_finite, zero)
    outside = torch.isnan(diff) | (diff > allowed)
    # Error magnitudes are over the finite elements; NaN and Inf are counted apart.
    diff = diff.where(torch.isfinite(diff), zero)
    ref_norm = float(ref64.where(ref_finite, zero).norm())
    diff_norm = float(diff.norm()) if diff.numel() else 0.0
    return dict(
        max_abs=float(diff.max()) if diff.numel() else 0.0,
        rel_l2=diff_norm / ref_norm if ref_norm > 0 else diff_norm,
        nan=nan,
        inf=inf,
        mismatched=int(outside.sum()) + nonfinite_mismatch,
    )


def check_outputs(
    outputs: dict[str, torch.Tensor],
    expected: dict[str, torch.Tensor],
    tol: Tolerance,
    seeds: list[int],
) -> AccuracyRecord:
    """Worst-case errors over all named outputs; passes only if every element is in tolerance."""
    if outputs.keys() != expected.keys():
        raise ValueError(f"outputs {sorted(outputs)} do not match the reference's {sorted(expected)}")
    per_output = {name: _errors(name, outputs[name], expected[name], tol) for name in expected}
    totals = {key: sum(errors[key] for errors in per_output.values()) for key in ("nan", "inf", "mismatched")}
    worst_name = max(
        per_output, key=lambda name: (per_output[name]["mismatched"], per_output[name]["rel_l2"]), default=""
    )
    passed = totals["mismatched"] == 0 and totals["nan"] == 0 and totals["inf"] == 0
    message = (
        ""
        if passed
        else (
            f"{totals['mismatched']} elements outside atol={tol.atol:g} (+{tol.atol_of_max:g} of max) "
            f"rtol={tol.rtol:g}, {totals['nan']} NaN, {totals['inf']} Inf (worst output: {worst_name})"
        )
    )
    return AccuracyRecord(
        passed=passed,
        max_abs_err=max((errors["max_abs"] for errors in per_output.values()), default=0.0),
        rel_l2_err=max((errors["rel_l2"] for errors in per_output.values()), default=0.0),
        nan_count=totals["nan"],
        inf_count=totals["inf"],
        mismatched=totals["mismatched"],
        worst_output=worst_name,
        atol=tol.atol,
        rtol=tol.rtol,
        atol_of_max=tol.atol_of_max,
        seeds=list(seeds),
        message=message,
    )


def merge_records(records: list[AccuracyRecord]) -> AccuracyRecord:
    """One record for several seeds: the worst errors, summed counts, all seeds."""
    worst = max(records, key=lambda record: (not record.passed, record.rel_l2_err))
    return AccuracyRecord(
        passed=all(record.passed for record in records),
        max_abs_err=max(record.max_abs_err for record in records),
        rel_l2_err=max(record.rel_l2_err for record in records),
        nan_count=sum(record.nan_count for record in records),
        inf_count=sum(record.inf_count for record in records),
        mismatched=sum(record.mismatched for record in records),
        worst_output=worst.worst_output,
        atol=worst.atol,
        rtol=worst.rtol,
        atol_of_max=worst.atol_of_max,
        seeds=[seed for record in records for seed in record.seeds],
        poisoned=all(record.poisoned for record in records),
        message=worst.message,
    )
