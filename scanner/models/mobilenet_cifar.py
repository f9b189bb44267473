"""A width-reduced MobileNetV2 for 32x32 inputs (inverted residuals, BN, ReLU6).

Why this family: depthwise convs (grouped Conv nodes), ReLU6 (exported as Clip) and linear
bottlenecks without an activation are common in models published for edge devices, and the
scanner must import, split and repair them like any other. The ImageNet strides are adapted to
32x32 (stride-1 stem, three stride-2 stages down to 4x4) and the widths reduced so that a CPU
trains it. Layout and names follow torchvision's ``MobileNetV2`` (``features``, ``conv``,
``classifier``); BN always follows a conv, so it folds on export.
"""

from __future__ import annotations

import torch
from torch import nn

# (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper. The
# first stride-2 stage comes early on purpose: 6x-expanded depthwise convs at 32x32 made a
# training step ~10x slower on CPU for the same parameters.
DEFAULT_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2), (6, 96, 1, 1), (6, 128, 2, 1))


class ConvBNReLU6(nn.Sequential):
    """k x k conv (optionally depthwise), BN, ReLU6."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups,
                                   bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """1x1 expand - 3x3 depthwise - 1x1 linear projection; identity added when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.use_res_connect = stride == 1 and c_in == c_out
        layers: list[nn.Module] = [] if expand == 1 else [ConvBNReLU6(c_in, hidden, kernel=1)]
        layers += [ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Cifar(nn.Module):
    """Stem, inverted-residual stages from ``setting``, 1x1 conv to ``last_channel``, pool, fc."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, stem: int = 16,
                 setting: tuple[tuple[int, int, int, int], ...] = DEFAULT_SETTING,
                 last_channel: int = 512, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNReLU6(in_channels, stem)]
        c = stem
        for t, c_out, n, s in setting:
            for i in range(n):
                layers.append(InvertedResidual(c, c_out, s if i == 0 else 1, t))
                c = c_out
        layers.append(ConvBNReLU6(c, last_channel, kernel=1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
