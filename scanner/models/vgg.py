"""A small VGG-style CIFAR network, so that benchmark zoos span more than one architecture."""

from __future__ import annotations

import torch
from torch import nn


class CifarVGG(nn.Module):
    """Conv-BN-ReLU stacks with max-pools; ``cfg`` entries are widths or ``"M"`` for a pool."""

    def __init__(self, cfg: tuple, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1, bias=False), nn.BatchNorm2d(int(v)),
                           nn.ReLU(inplace=True)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
