import pytest
import torch

from menagerie.harness import registry
from menagerie.harness.registry import Benchmark, Case, Cost, Impl, Tolerance
from tests.harness.toy import correct, make_inputs, reference


def declare(**overrides):
    settings = dict(
        name="toy.ok",
        description="",
        cases={"tiny": [Case("a", {"n": 3})]},
        make_inputs=make_inputs,
        reference=Impl("reference", reference, role="reference"),
        variants=[Impl("v", correct)],
        cost=lambda case, mode, dtype: Cost(),
        tolerances={torch.float32: Tolerance(1e-6, 1e-6)},
    )
    settings.update(overrides)
    return Benchmark(**settings)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(name="nofamily"), "family.op"),
        (dict(cases={"huge": []}), "unknown size presets"),
        (dict(modes=("sideways",)), "unknown modes"),
        (dict(modes=("fwd", "bwd")), "need grad_inputs"),
        (dict(reference=Impl("r", reference)), "role='reference'"),
        (dict(variants=[Impl("reference", correct)]), "unique"),
    ],
)
def test_bad_declarations_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        declare(**overrides)


def test_bad_role_is_rejected():
    with pytest.raises(ValueError, match="role"):
        Impl("x", correct, role="hero")


def test_builtin_benchmark_is_registered_and_selectable():
    names = [bench.name for bench in registry.select()]
    assert "elementwise.bias_gelu" in names
    assert [bench.name for bench in registry.select(["elementwise"])] == ["elementwise.bias_gelu"]
    assert [bench.name for bench in registry.select(["*.bias_*"])] == ["elementwise.bias_gelu"]


def test_unknown_pattern_names_the_known_benchmarks():
    with pytest.raises(ValueError, match="no benchmark matches 'nope'.*elementwise.bias_gelu"):
        registry.select(["nope"])


def test_duplicate_registration_is_rejected():
    registry.load_all()
    existing = registry.select(["elementwise.bias_gelu"])[0]
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(existing)
