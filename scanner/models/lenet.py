"""LeNet-5 for 32x32 colour images, as in the PyTorch CIFAR-10 tutorial.

Why this family: the smallest classifier people still publish; no BN, no residuals, a
three-layer dense head, and features that are the output of a hidden Linear layer rather than of
a pooled conv stack. Names (``conv1``, ``pool``, ``conv2``, ``fc1..fc3``) follow the tutorial.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LeNet5(nn.Module):
    """(conv5x5-ReLU-maxpool) x 2, then 120-84-``num_classes`` fully connected layers."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        side = ((input_size - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc2(F.relu(self.fc1(x))))
        return self.fc3(x)
