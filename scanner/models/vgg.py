"""Small VGG-style CIFAR networks, so that benchmark zoos span more than one architecture.

``act``/``bn`` cover the variants seen in the wild: the usual Conv-BN-ReLU stacks (the BN folds
into the conv on export) and BN-free stacks with ELU (conv biases, a smooth activation, nothing
to fold). The defaults keep ``vgg_small``/``vgg11_cifar`` parameter names unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "elu": nn.ELU}


class CifarVGG(nn.Module):
    """Conv[-BN]-act stacks with max-pools; ``cfg`` entries are widths or ``"M"`` for a pool."""

    def __init__(self, cfg: tuple, num_classes: int = 10, in_channels: int = 3,
                 act: str = "relu", bn: bool = True) -> None:
        super().__init__()
        if act not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; choose " + ", ".join(_ACTIVATIONS))
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(nn.Conv2d(c, int(v), 3, padding=1, bias=not bn))
                if bn:
                    layers.append(nn.BatchNorm2d(int(v)))
                layers.append(_ACTIVATIONS[act](inplace=True))
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        # Without BN, PyTorch's default (small) conv init is kept on purpose: He init made the
        # 5-layer ELU net diverge (NaN) at SGD lr 0.05-0.1 on raw [0, 1] inputs.

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
