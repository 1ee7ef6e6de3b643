import torch

from menagerie.harness import runner
from menagerie.harness.accuracy import check_outputs, poisoned_allocations
from menagerie.harness.registry import Impl, Tolerance
from tests.harness.toy import (
    correct,
    crashes,
    never_here,
    produces_nan,
    quick_config,
    slightly_wrong,
    toy_benchmark,
    unwritten_tail,
)


def rows_by_impl(bench, config=None):
    record = runner.run([bench], config or quick_config())
    return {row["impl"]: row for row in record["rows"]}


def test_correct_kernel_passes_and_is_timed():
    rows = rows_by_impl(toy_benchmark([Impl("correct", correct)]))
    row = rows["correct"]
    assert row["status"] == "ok"
    assert row["accuracy"]["passed"] and row["accuracy"]["seeds"] == [0, 1]
    assert row["accuracy"]["max_abs_err"] < 1e-6
    assert len(row["samples_s"]) >= 5 and all(sample > 0 for sample in row["samples_s"])
    assert rows["reference"]["metrics"]["speedup_vs_reference"] == 1.0


def test_wrong_kernel_fails_accuracy():
    row = rows_by_impl(toy_benchmark([Impl("wrong", slightly_wrong)]))["wrong"]
    assert row["status"] == "accuracy_failed"
    assert row["accuracy"]["mismatched"] == 2 * 33  # every element, on both seeds
    assert row["accuracy"]["max_abs_err"] > 9e-4
    assert "outside" in row["reason"]
    assert row["samples_s"], "a failing implementation is still timed"


def test_unwritten_output_is_caught_by_poisoning():
    row = rows_by_impl(toy_benchmark([Impl("lazy", unwritten_tail)]))["lazy"]
    assert row["status"] == "accuracy_failed"
    assert row["accuracy"]["nan_count"] == 2  # the last element, on each seed


def test_unpoisoned_implementations_are_labelled():
    rows = rows_by_impl(toy_benchmark([Impl("compiled", correct, poison=False)]))
    assert rows["compiled"]["status"] == "ok"
    assert rows["compiled"]["accuracy"]["poisoned"] is False
    assert rows["reference"]["accuracy"]["poisoned"] is True


def test_nan_output_is_counted():
    row = rows_by_impl(toy_benchmark([Impl("nan", produces_nan)]))["nan"]
    assert row["status"] == "accuracy_failed"
    assert row["accuracy"]["nan_count"] == 2


def test_crash_and_unavailable_are_reported_not_dropped():
    rows = rows_by_impl(toy_benchmark([Impl("crash", crashes), Impl("absent", correct, skip_reason=never_here)]))
    assert rows["crash"]["status"] == "error" and "kernel launch failed" in rows["crash"]["reason"]
    assert rows["absent"]["status"] == "skipped"
    assert rows["absent"]["reason"] == "needs hardware this machine lacks"


def test_backward_modes_compare_gradients():
    def wrong_gradient(x, b):
        return 2 * x + b.detach() + 0 * b  # forward right, d/db wrong (zero)

    bench = toy_benchmark([Impl("correct", correct), Impl("bad_grad", wrong_gradient)], modes=("fwd", "bwd", "fwd_bwd"))
    record = runner.run([bench], quick_config())
    status = {(row["impl"], row["mode"]): row for row in record["rows"]}
    for mode in ("fwd", "bwd", "fwd_bwd"):
        assert status[("correct", mode)]["status"] == "ok"
    assert status[("bad_grad", "fwd")]["status"] == "ok"
    assert status[("bad_grad", "bwd")]["status"] == "accuracy_failed"
    assert status[("bad_grad", "bwd")]["accuracy"]["worst_output"] == "grad_b"
    assert status[("bad_grad", "fwd_bwd")]["status"] == "accuracy_failed"


def test_half_precision_is_checked_against_float32():
    record = runner.run([toy_benchmark([Impl("correct", correct)])], quick_config(dtypes=(torch.float16,)))
    assert {row["dtype"] for row in record["rows"]} == {"float16"}
    assert all(row["status"] == "ok" for row in record["rows"])


def test_poisoning_fills_floats_with_nan_and_integers_with_minus_one():
    with poisoned_allocations():
        floats, ints = torch.empty(7), torch.empty(5, dtype=torch.int64)
        like = torch.empty_like(floats)
    assert torch.isnan(floats).all() and torch.isnan(like).all()
    assert (ints == -1).all()


def test_tolerance_can_scale_with_the_largest_reference_value():
    expected = {"out": torch.tensor([1000.0, 0.0])}
    outputs = {"out": torch.tensor([1000.0, 0.05])}  # 0.05 off where the reference is 0
    assert not check_outputs(outputs, expected, Tolerance(atol=1e-3, rtol=1e-3), [0]).passed
    assert check_outputs(outputs, expected, Tolerance(atol=0.0, rtol=0.0, atol_of_max=1e-4), [0]).passed


def test_integer_outputs_must_match_exactly():
    expected = {"indices": torch.tensor([0, 3, 5])}
    tolerance = Tolerance(atol=1.0, rtol=1.0)  # no tolerance applies to integers
    assert check_outputs({"indices": torch.tensor([0, 3, 5])}, expected, tolerance, [0]).passed
    record = check_outputs({"indices": torch.tensor([0, 4, 5])}, expected, tolerance, [0])
    assert not record.passed and record.mismatched == 1


def test_accuracy_view_compares_what_the_benchmark_says():
    import dataclasses

    def reversed_output(x, b):
        return (2 * x + b).flip(0)

    bench = toy_benchmark([Impl("reversed", reversed_output)])
    assert rows_by_impl(bench)["reversed"]["status"] == "accuracy_failed"

    def sorted_view(named, inputs):
        assert set(inputs) == {"x", "b"}
        return {name: out.sort().values for name, out in named.items()}

    rows = rows_by_impl(dataclasses.replace(bench, accuracy_view=sorted_view))
    assert rows["reversed"]["status"] == "ok" and rows["reversed"]["accuracy"]["passed"]
