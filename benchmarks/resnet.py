"""``resnet.train_step``: forward and backward of a ResNet on synthetic images already on the device.

The reference is the plain loop's step: eager, float32 whatever the row's dtype
(low-precision inputs are upcast), NCHW. The optimized step keeps float32 master
weights, feeds channels_last images and weights, and computes under autocast in the
row's dtype (bf16 on a GPU), as ``menagerie train resnet`` does; ``compiled`` is the
same step under ``torch.compile`` (GPU only: compiling on the CPU takes minutes). So
the speedup column of a bf16 row reads "optimized bf16 over eager fp32", the
comparison the MLPerf-style loop is judged by. The step ends at the gradients: the
optimizer update and the data loader are outside it (``loaders.throughput`` and
``menagerie train resnet`` measure those). Images per second = batch / median.

BatchNorm runs in training mode (batch statistics); the parameters are one flat
``weights`` input (so the harness checks their gradients whatever the arch); the
running statistics live in a skeleton model per (arch, device, memory format).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import torch
from torch import nn

from menagerie.harness.registry import (
    Benchmark,
    Case,
    Cost,
    Impl,
    PublishedFigure,
    Tolerance,
    cost_of_mode,
    needs,
    publish,
    register,
)
from menagerie.models.mlperf import PUBLISHED as MLPERF_ANCHORS
from menagerie.models.resnet import build


@functools.cache
def _skeleton(arch: str, classes: int, device: torch.device, memory_format) -> nn.Module:
    """A model whose parameters are replaced by functional_call; it keeps the BatchNorm running statistics."""
    return build(arch, classes).to(device, memory_format=memory_format).train()


def step_case(*, arch: str, batch: int, size: int, classes: int) -> Case:
    return Case(f"{arch}_b{batch}_{size}px", {"arch": arch, "batch": batch, "size": size, "classes": classes})


# ResNet-50 on ImageNet, as MLPerf trains it: 224-pixel images, 1000 classes.
RESNET50_IMAGENET = dict(arch="resnet50", size=224, classes=1000)


def make_inputs(case: Case, dtype: torch.dtype, device: torch.device, seed: int) -> dict:
    """Images, the model's parameters flattened into one ``weights`` vector, and the arch and class count."""
    p = case.params
    torch.manual_seed(seed)  # the model's own initialisation, reproducible per seed
    model = build(p["arch"], p["classes"])
    for module in model.modules():  # zero-initialised BatchNorm scales would hide half the gradients
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
    images = torch.randn(p["batch"], 3, p["size"], p["size"], generator=torch.Generator().manual_seed(seed))
    weights = torch.cat([value.detach().flatten() for value in model.parameters()])
    return {
        "images": images.to(device, dtype),
        "weights": weights.to(device, dtype),
        "arch": p["arch"],
        "classes": p["classes"],
    }


def _parameters(weights: torch.Tensor, model: nn.Module, dtype: torch.dtype, memory_format) -> dict:
    """The flat ``weights`` cut into the model's named parameters (differentiably), in ``dtype`` and
    ``memory_format``."""
    named = list(model.named_parameters())
    pieces = torch.split(weights.to(dtype), [value.numel() for _, value in named])
    return {
        name: piece.view(value.shape).contiguous(memory_format=memory_format)
        if value.ndim == 4
        else piece.view(value.shape)
        for (name, value), piece in zip(named, pieces)
    }


def eager_fp32(images, weights, arch, classes):
    """The reference step: eager, float32 (low-precision inputs upcast; float64 stays float64), NCHW."""
    dtype = torch.float32 if images.dtype in (torch.float16, torch.bfloat16) else images.dtype
    model = _skeleton(arch, classes, images.device, torch.contiguous_format).to(dtype)
    parameters = _parameters(weights, model, dtype, torch.contiguous_format)
    return torch.func.functional_call(model, parameters, (images.to(dtype).contiguous(),))


def channels_last_autocast(images, weights, arch, classes):
    """The optimized step: float32 master weights, channels_last, autocast to the inputs' dtype when it is 16-bit."""
    model = _skeleton(arch, classes, images.device, torch.channels_last).float()
    parameters = _parameters(weights, model, torch.float32, torch.channels_last)
    low = images.dtype in (torch.float16, torch.bfloat16)
    with torch.autocast(images.device.type, dtype=images.dtype) if low else contextlib.nullcontext():
        logits = torch.func.functional_call(model, parameters, (images.contiguous(memory_format=torch.channels_last),))
    return logits.to(images.dtype)


@functools.cache
def _compiled_step():
    return torch.compile(channels_last_autocast)


def compiled(images, weights, arch, classes):
    """``channels_last_autocast`` under ``torch.compile`` (compiled once, recompiled per new signature)."""
    return _compiled_step()(images, weights, arch, classes)


def forward_flops(case: Case) -> float:
    """2 x multiply-accumulates of every convolution and the classifier, counted on the meta device."""
    p = case.params
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            height, width = module.kernel_size
            total += output.numel() * module.in_channels // module.groups * height * width
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    with torch.device("meta"):
        model = build(p["arch"], p["classes"])
    hooks = [
        module.register_forward_hook(count) for module in model.modules() if isinstance(module, (nn.Conv2d, nn.Linear))
    ]
    model(torch.empty(p["batch"], 3, p["size"], p["size"], device="meta"))
    for hook in hooks:
        hook.remove()
    return 2.0 * total


def cost(case: Case, mode: str, dtype: torch.dtype) -> Cost:
    """FLOPs: forward, backward = 2x forward. Bytes: the floor of reading images and weights and writing gradients."""
    p = case.params
    with torch.device("meta"):
        parameters = sum(value.numel() for value in build(p["arch"], p["classes"]).parameters())
    images = p["batch"] * 3 * p["size"] ** 2
    fwd = Cost(flops=forward_flops(case), bytes=(images + parameters) * dtype.itemsize)
    bwd = Cost(flops=2 * fwd.flops, bytes=2 * parameters * dtype.itemsize)
    return dataclasses.replace(cost_of_mode(mode, fwd, bwd), extra={"images": p["batch"]})


CASES_BY_SIZE = {
    "tiny": [step_case(arch="resnet8", batch=4, size=16, classes=10)],
    "small": [step_case(batch=64, **RESNET50_IMAGENET)],
    "full": [step_case(batch=256, **RESNET50_IMAGENET)],
}

register(
    Benchmark(
        name="resnet.train_step",
        description="ResNet forward + backward (BatchNorm in training mode) on synthetic (N, 3, S, S) images",
        cases=CASES_BY_SIZE,
        make_inputs=make_inputs,
        reference=Impl("eager_fp32", eager_fp32, role="reference", note="eager, float32, NCHW"),
        variants=[
            Impl("channels_last_autocast", channels_last_autocast, note="fp32 weights, autocast to the row's dtype"),
            Impl(
                "compiled",
                compiled,
                poison=False,
                note="torch.compile",
                skip_reason=needs("the compiled step", cuda=True, why="compiling a ResNet on the CPU takes minutes"),
            ),
        ],
        cost=cost,
        # Deep BatchNorm networks amplify rounding in the gradients: scale-aware absolute tolerances.
        tolerances={
            torch.float32: Tolerance(atol=1e-4, rtol=1e-3, atol_of_max=1e-3),
            torch.bfloat16: Tolerance(atol=5e-2, rtol=5e-2, atol_of_max=5e-2),
        },
        modes=("fwd", "fwd_bwd"),
        grad_inputs=("images", "weights"),
    )
)

# The MLPerf anchors `menagerie mlperf` scores against, set beside this family's results on a device's site page.
for anchor in MLPERF_ANCHORS.values():
    publish(
        PublishedFigure(
            "ResNet-50 training (MLPerf)",
            anchor.device.upper(),
            f"time to train, {anchor.system}",
            anchor.minutes,
            "minutes",
            anchor.source,
        )
    )
    publish(
        PublishedFigure(
            "ResNet-50 training (MLPerf)",
            anchor.device.upper(),
            "tracked throughput per accelerator",
            anchor.img_per_s_per_accelerator,
            "images/s",
            anchor.source,
        )
    )
