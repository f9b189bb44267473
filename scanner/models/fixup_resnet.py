"""BN-free CIFAR ResNets with Fixup initialisation (Zhang, Dauphin & Ma 2019).

Why this family: models trained without BatchNorm behave differently under repair (no running
statistics to freeze or re-estimate, activations not re-centred), and their exported graphs carry
bare scalar Add/Mul nodes instead of folded BN. Fixup keeps training stable at SGD lr 0.1 without
normalisation layers: scalar biases before each conv/activation, a scalar multiplier per residual
branch, the last conv of each branch and the classifier initialised to zero, and the other branch
convs scaled by ``L ** -0.5`` (``L`` residual branches). Parameter names and the option-A shortcut
(stride-2 subsampling plus zero channels) follow the authors' ``fixup_resnet_cifar.py``, so their
safetensors files load strictly.

The authors train the scalars at 1/10 of the base learning rate: one scalar bias shifts every
channel at once, and at the full rate of ``scanner.attacks.train`` (one SGD group, lr 0.1) they
pushed the features into dead ReLUs within ~30 steps. As that trainer has a single parameter
group, the model scales the scalars' gradients by :data:`SCALAR_GRAD_SCALE` in training mode
instead (the same effect under SGD, weight decay aside); the forward pass and the exported graph
are unchanged. Like any BN-free net it wants normalised inputs: on raw [0, 1] images it stalls at
chance at lr 0.05-0.1 (train it with the normalisation in the graph).
"""

from __future__ import annotations

import math

import torch
from torch import nn


SCALAR_GRAD_SCALE = 0.1


class _GradScale(torch.autograd.Function):
    """Identity forward; the gradient multiplied by ``scale`` (a per-parameter learning rate)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None


def _scalar(module: nn.Module, p: nn.Parameter) -> torch.Tensor:
    """``p`` itself, with its gradient scaled by :data:`SCALAR_GRAD_SCALE` while training."""
    return _GradScale.apply(p, SCALAR_GRAD_SCALE) if module.training else p


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)


class FixupBasicBlock(nn.Module):
    """conv3x3-ReLU-conv3x3 residual branch with scalar biases and a scalar multiplier."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bias1a = nn.Parameter(torch.zeros(1))
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bias1b = nn.Parameter(torch.zeros(1))
        self.relu = nn.ReLU(inplace=True)
        self.bias2a = nn.Parameter(torch.zeros(1))
        self.conv2 = _conv3x3(planes, planes)
        self.scale = nn.Parameter(torch.ones(1))
        self.bias2b = nn.Parameter(torch.zeros(1))
        # Option A: subsample, then append zero channels (no parameters, nothing to normalise).
        self.downsample = nn.AvgPool2d(1, stride=stride) if stride != 1 else None
        self.extra_channels = planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias1a = _scalar(self, self.bias1a)
        out = self.conv1(x + bias1a)
        out = self.relu(out + _scalar(self, self.bias1b))
        out = self.conv2(out + _scalar(self, self.bias2a))
        out = out * _scalar(self, self.scale) + _scalar(self, self.bias2b)
        identity = x
        if self.downsample is not None:
            identity = self.downsample(x + bias1a)
        if self.extra_channels:
            identity = torch.cat((identity, torch.mul(identity, 0)), 1)
        return self.relu(out + identity)


class FixupResNet(nn.Module):
    """3x3 stem, three stages of 16/32/64 channels (``blocks`` per stage), pool, scalar bias, fc."""

    def __init__(self, blocks: tuple[int, int, int] = (2, 2, 2), num_classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.num_layers = sum(blocks)
        self.in_planes = 16
        self.conv1 = _conv3x3(in_channels, 16)
        self.bias1 = nn.Parameter(torch.zeros(1))
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, blocks[0], 1)
        self.layer2 = self._make_layer(32, blocks[1], 2)
        self.layer3 = self._make_layer(64, blocks[2], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.bias2 = nn.Parameter(torch.zeros(1))
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, FixupBasicBlock):
                w = m.conv1.weight
                std = math.sqrt(2.0 / (w.shape[0] * w.shape[2] * w.shape[3]))
                nn.init.normal_(w, mean=0.0, std=std * self.num_layers ** -0.5)
                nn.init.zeros_(m.conv2.weight)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(FixupBasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv1(x) + _scalar(self, self.bias1))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = torch.flatten(self.avgpool(out), 1)
        return self.fc(out + _scalar(self, self.bias2))
