"""The declaration helpers: the cost of a mode, and the skip reasons of an implementation's needs."""

import pytest
import torch

from menagerie.harness.registry import Case, Cost, cost_of_mode, first_reason, needs

CASE = Case("c", {})
CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object, whether or not this machine has one


def reason(skip_reason, device=CPU):
    return skip_reason(CASE, device, torch.float32, "fwd")


def test_cost_of_mode_is_the_forward_the_backward_or_both():
    fwd = Cost(flops=2, bytes=3, exp=1, extra={"tiles": 4})
    bwd = Cost(flops=5, bytes=7, exp=2, extra={"tiles": 6})
    assert cost_of_mode("fwd", fwd, bwd) == fwd
    assert cost_of_mode("bwd", fwd, bwd) == bwd
    assert cost_of_mode("fwd_bwd", fwd, bwd) == Cost(flops=7, bytes=10, exp=3, extra={"tiles": 10})
    with pytest.raises(ValueError, match="sideways"):
        cost_of_mode("sideways", fwd, bwd)


def test_a_missing_module_names_the_package():
    missing = needs("no-such-package", module="menagerie_test_no_such_module", cuda=True)
    assert reason(missing) == reason(missing, CUDA) == "no-such-package is not installed"


def test_an_installed_module_gives_no_reason():
    assert reason(needs("torch", module="torch")) is None


def test_an_installed_module_that_does_not_import_says_why(tmp_path, monkeypatch):
    (tmp_path / "menagerie_test_broken_module.py").write_text("raise ImportError('no compiled extension')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = needs("broken-package", module="menagerie_test_broken_module")
    assert reason(broken) == "broken-package is installed but does not import (no compiled extension)"


def test_the_cuda_rule_says_what_runs_on_cuda_only_and_why():
    compiled = needs("the compiled peer", cuda=True, why="compiling takes minutes on the CPU")
    assert reason(compiled) == "the compiled peer runs on CUDA only (compiling takes minutes on the CPU)"
    assert reason(compiled, CUDA) is None
    assert reason(needs("torch", module="torch", cuda=True)) == "torch runs on CUDA only"
    assert reason(needs("torch", module="torch", cuda=True), CUDA) is None


def test_needs_wants_a_module_or_cuda():
    with pytest.raises(ValueError, match="module"):
        needs("nothing")


def test_first_reason_gives_the_first_that_applies():
    cuda_only = needs("peer", cuda=True)
    float64_only = lambda case, device, dtype, mode: None if dtype == torch.float64 else "float64 only"  # noqa: E731
    either = first_reason(cuda_only, float64_only)
    assert reason(either) == "peer runs on CUDA only"
    assert reason(either, CUDA) == "float64 only"
    assert either(CASE, CUDA, torch.float64, "fwd") is None
