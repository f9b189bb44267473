"""Pre-activation Wide ResNets for CIFAR (Zagoruyko & Komodakis 2016), e.g. WRN-16-2.

Why this family: it is among the most downloaded CIFAR checkpoints, and its BN-ReLU-conv ordering
differs from the post-activation ResNets in ``cifar_resnet``: a BatchNorm that follows a residual
sum has no conv to fold into, so exported graphs keep ``BatchNormalization`` nodes. Parameter names
follow the widely copied ``WideResNet-pytorch`` implementation (``block1.layer.0.bn1``,
``convShortcut``, ``fc``) so that its safetensors files load strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus identity, or a 1x1 conv shortcut on a shape change."""

    def __init__(self, in_planes: int, out_planes: int, stride: int,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes and stride == 1
        self.convShortcut = (None if self.equal_in_out
                             else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu1(self.bn1(x))
        # As in the reference code, a projection shortcut reads the pre-activated input.
        shortcut = x if self.convShortcut is None else self.convShortcut(pre)
        out = self.relu2(self.bn2(self.conv1(pre)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return shortcut + self.conv2(out)


class NetworkBlock(nn.Module):
    """``n`` pre-activation blocks; the first one changes width and stride."""

    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        self.layer = nn.Sequential(*[
            PreActBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1,
                        drop_rate) for i in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-``depth``-``widen``: 3x3 stem, stages of 16k/32k/64k channels, BN-ReLU, pool, fc."""

    def __init__(self, depth: int = 16, widen: int = 2, num_classes: int = 10,
                 in_channels: int = 3, drop_rate: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1, drop_rate)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2, drop_rate)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
