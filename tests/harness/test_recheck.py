"""Rechecked after timing (``harness/recheck.py``): planted cheats are caught and named by their status, and an
honest implementation is not."""

import json

import pytest
import torch

from menagerie.harness import recheck, runner
from menagerie.harness.gate import gate
from menagerie.harness.registry import Impl
from tests.harness.toy import correct, quick_config, reference, toy_benchmark


class CachedByPointer:
    """Right on its first call for given tensors, then returns that result while the pointers stay the same:
    what a stale cache keyed on ``data_ptr()`` does."""

    def __init__(self):
        self.cache = {}

    def __call__(self, x, b):
        key = (x.data_ptr(), b.data_ptr())
        if key not in self.cache:
            self.cache[key] = reference(x, b)
        return self.cache[key].clone()


def writes_into_its_input(x, b):
    out = reference(x, b)
    with torch.no_grad():  # after computing its result, which is right; no_grad: x may be a gradient leaf
        x.mul_(0.5)
    return out


def rows_of(variants, modes=("fwd",)):
    record = runner.run([toy_benchmark(variants, modes)], quick_config())
    return {(row["impl"], row["mode"]): row for row in record["rows"]}, record


def test_a_result_cached_by_pointer_is_wrong_after_timing():
    rows, _ = rows_of([Impl("cached", CachedByPointer())])
    row = rows[("cached", "fwd")]
    assert row["accuracy"]["passed"], "right when cold: the accuracy check before timing passes"
    assert row["status"] == recheck.WRONG_AFTER_TIMING and row["samples_s"]
    assert "after timing, on new values in the tensors it was timed on" in row["reason"]


@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
def test_an_implementation_that_writes_into_its_input_is_caught(mode):
    rows, _ = rows_of([Impl("writer", writes_into_its_input)], modes=(mode,))
    row = rows[("writer", mode)]
    assert row["accuracy"]["passed"] and row["status"] == recheck.MUTATES_INPUTS
    assert "it changed its input(s) x while timed" in row["reason"]


@pytest.mark.parametrize("mode", ["fwd", "bwd", "fwd_bwd"])
def test_honest_implementations_pass_the_recheck_in_every_mode(mode):
    rows, _ = rows_of([Impl("correct", correct)], modes=(mode,))
    assert rows[("correct", mode)]["status"] == "ok" and rows[("reference", mode)]["status"] == "ok"


def test_both_statuses_fail_the_gate_and_the_schema_knows_them():
    from menagerie.harness.results import validate

    _, baseline = rows_of([Impl("cached", correct), Impl("writer", correct)])
    _, cheating = rows_of([Impl("cached", CachedByPointer()), Impl("writer", writes_into_its_input)])
    validate(json.loads(json.dumps(cheating)))
    result = gate([baseline], [cheating], max_undetectable=1e9)
    verdicts = {row.key[2]: row.verdict for row in result.rows}
    assert not result.passed
    assert verdicts["cached"] == recheck.WRONG_AFTER_TIMING and verdicts["writer"] == recheck.MUTATES_INPUTS


def test_inputs_whose_shapes_change_with_the_seed_are_rechecked_at_new_pointers():
    seen = {"x": torch.zeros(3), "n": 3}
    assert not recheck.refill(seen, {"x": torch.ones(4), "n": 4})
    assert not recheck.refill(seen, {"x": torch.ones(3), "n": 4})  # another argument differs
    assert torch.equal(seen["x"], torch.zeros(3))
    assert recheck.refill(seen, {"x": torch.ones(3), "n": 3}) and torch.equal(seen["x"], torch.ones(3))


def test_nan_in_an_input_is_not_a_mutation():
    pristine = {"x": torch.tensor([1.0, float("nan")]), "i": torch.tensor([1, 2])}
    assert recheck.mutated_inputs(recheck.cloned(pristine), pristine) == []
    changed = recheck.cloned(pristine)
    changed["i"][0] = 5
    assert recheck.mutated_inputs(changed, pristine) == ["i"]


def test_clones_keep_one_tensor_passed_as_two_arguments_one():
    offsets = torch.tensor([0, 3, 7])
    copy = recheck.cloned({"cu_seqlens_q": offsets, "cu_seqlens_k": offsets, "x": torch.zeros(2), "n": 7})
    assert copy["cu_seqlens_q"] is copy["cu_seqlens_k"] and copy["cu_seqlens_q"] is not offsets and copy["n"] == 7
