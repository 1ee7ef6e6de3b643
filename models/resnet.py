"""ResNets for the MLPerf-style training loop.

- ``resnet50``: ResNet-50 v1.5 as in MLPerf Training and torchvision: bottleneck
  blocks whose stride sits on the 3x3 convolution (v1 put it on the first 1x1), a
  7x7 stem and max-pool, stages of 3, 4, 6, 3 blocks; 25,557,032 parameters for
  1000 classes, the same layout and count as ``torchvision.models.resnet50``.
- ``resnet18``: basic blocks, stages of 2, 2, 2, 2 (11,689,512 parameters for 1000 classes).
- ``resnet20`` and ``resnet8``: the CIFAR ResNets of He et al. (2016), 6n+2 layers with a
  3x3 stem, no max-pool and 16, 32, 64 channels, for small images and quick runs.

Initialisation (torchvision's, not the MLPerf reference's): Kaiming-normal fan-out
convolutions (``std = sqrt(2 / (k*k*out_channels))``), unit BatchNorm scales except the
last BatchNorm of every residual branch, which starts at zero so each block starts as the
identity, and a normal(0, 0.01) classifier with zero bias. The MLPerf reference draws its
convolution weights from a truncated normal scaled by the fan-in instead; the rules leave
the initialisation to the submitter, so both are allowed in the closed division.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride: v1.5), 1x1 expand by 4; projection shortcut when the shape changes."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int):
        super().__init__()
        out_channels = width * self.expansion
        self.branch = nn.Sequential(
            *_conv_bn(in_channels, width, 1, 1),
            nn.ReLU(inplace=True),
            *_conv_bn(width, width, 3, stride),
            nn.ReLU(inplace=True),
            *_conv_bn(width, out_channels, 1, 1),
        )
        self.shortcut = (
            nn.Sequential(*_conv_bn(in_channels, out_channels, 1, stride))
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.branch(x) + self.shortcut(x))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (the first carrying the stride); projection shortcut when the shape changes."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int):
        super().__init__()
        self.branch = nn.Sequential(
            *_conv_bn(in_channels, width, 3, stride),
            nn.ReLU(inplace=True),
            *_conv_bn(width, width, 3, 1),
        )
        self.shortcut = (
            nn.Sequential(*_conv_bn(in_channels, width, 1, stride))
            if stride != 1 or in_channels != width
            else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.branch(x) + self.shortcut(x))


class ResNet(nn.Module):
    """A stem, stages of residual blocks, pooling and a linear classifier.

    The first block of every stage but the first halves the size.

    Input ``(N, 3, H, W)`` float images; output ``(N, num_classes)`` logits.
    """

    def __init__(
        self,
        block: type[Bottleneck] | type[BasicBlock],
        blocks: tuple[int, ...],
        widths: tuple[int, ...],
        num_classes: int,
        imagenet_stem: bool,
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        stem_width = 64 if imagenet_stem else widths[0]
        if imagenet_stem:
            self.stem = nn.Sequential(
                *_conv_bn(3, stem_width, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            )
        else:
            self.stem = nn.Sequential(*_conv_bn(3, stem_width, 3, 1), nn.ReLU(inplace=True))
        layers, channels = [], stem_width
        for stage, (count, width) in enumerate(zip(blocks, widths)):
            for index in range(count):
                layers.append(block(channels, width, 2 if stage > 0 and index == 0 else 1))
                channels = width * block.expansion
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._initialise()

    def _initialise(self):
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.stages:
            nn.init.zeros_(module.branch[-1].weight)  # the branch's last BatchNorm: each block starts as the identity
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


def resnet50(num_classes: int = 1000) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512), num_classes, imagenet_stem=True)


def resnet18(num_classes: int = 1000) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512), num_classes, imagenet_stem=True)


def resnet20(num_classes: int = 10) -> ResNet:
    return ResNet(BasicBlock, (3, 3, 3), (16, 32, 64), num_classes, imagenet_stem=False)


def resnet8(num_classes: int = 10) -> ResNet:
    return ResNet(BasicBlock, (1, 1, 1), (16, 32, 64), num_classes, imagenet_stem=False)


ARCHS: dict[str, Callable[[int], ResNet]] = {
    "resnet50": resnet50,
    "resnet18": resnet18,
    "resnet20": resnet20,
    "resnet8": resnet8,
}


def build(arch: str, num_classes: int) -> ResNet:
    """The named architecture; ValueError naming the known ones for an unknown name."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    return ARCHS[arch](num_classes)
