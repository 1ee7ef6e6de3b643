"""ResNet architectures: parameter counts, the v1.5 stride placement, shapes, initialisation, errors."""

import pytest
import torch
from torch import nn

from menagerie.models.resnet import ARCHS, build, resnet50


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet50_v15_has_torchvision_parameter_count():
    assert parameters(build("resnet50", 1000)) == 25_557_032


def test_resnet50_matches_torchvision_layer_by_layer():
    torchvision = pytest.importorskip("torchvision")
    ours = sorted(tuple(p.shape) for p in resnet50().parameters())
    theirs = sorted(tuple(p.shape) for p in torchvision.models.resnet50().parameters())
    assert ours == theirs


def test_resnet18_parameter_count():
    assert parameters(build("resnet18", 1000)) == 11_689_512


def test_v15_stride_sits_on_the_3x3_convolution():
    model = resnet50()
    downsampling = [
        block
        for block in model.stages
        if isinstance(block.shortcut, nn.Sequential) and block.shortcut[0].stride == (2, 2)
    ]
    assert len(downsampling) == 3  # the first block of stages 2, 3 and 4
    for block in downsampling:
        convs = [m for m in block.branch if isinstance(m, nn.Conv2d)]
        assert [c.kernel_size for c in convs] == [(1, 1), (3, 3), (1, 1)]
        assert [c.stride for c in convs] == [(1, 1), (2, 2), (1, 1)]


@pytest.mark.parametrize("arch,size", [("resnet8", 16), ("resnet20", 32), ("resnet18", 64)])
def test_logits_shape_and_channels_last(arch, size):
    model = build(arch, 7).to(memory_format=torch.channels_last)
    images = torch.randn(2, 3, size, size).contiguous(memory_format=torch.channels_last)
    assert model(images).shape == (2, 7)


def test_each_residual_branch_starts_as_identity():
    model = build("resnet18", 10)
    for block in model.stages:
        assert torch.count_nonzero(block.branch[-1].weight) == 0
    assert torch.count_nonzero(model.fc.bias) == 0


def test_unknown_arch_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown arch 'resnet51'.*resnet50"):
        build("resnet51", 10)
    assert set(ARCHS) == {"resnet50", "resnet18", "resnet20", "resnet8"}


def test_too_few_classes_is_rejected():
    with pytest.raises(ValueError, match="num_classes"):
        build("resnet8", 1)


def test_train_step_benchmark_runs_and_agrees_with_the_reference():
    from menagerie.harness import registry, runner
    from menagerie.harness.timing import Budget

    config = runner.RunConfig(
        size="tiny",
        device=torch.device("cpu"),
        timer="cpu",
        budget=Budget(warmup_s=0.01, measure_s=0.01, min_reps=1, max_reps=2),
        seeds=1,
    )
    record = runner.run(registry.select(["resnet.train_step"]), config, command=["test"])
    status = {(row["impl"], row["mode"]): row["status"] for row in record["rows"]}
    assert status == {
        ("eager_fp32", "fwd"): "ok",
        ("channels_last_autocast", "fwd"): "ok",
        ("compiled", "fwd"): "skipped",
        ("eager_fp32", "fwd_bwd"): "ok",
        ("channels_last_autocast", "fwd_bwd"): "ok",
        ("compiled", "fwd_bwd"): "skipped",
    }
    row = next(row for row in record["rows"] if row["impl"] == "eager_fp32" and row["mode"] == "fwd_bwd")
    assert row["cost"]["flops"] > 0 and row["cost"]["extra"]["images"] == 4
