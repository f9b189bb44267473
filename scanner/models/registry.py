"""Queryable registry of architectures known by name (for safetensors import and training).

Each variant is a typed :class:`ArchConfig`; :func:`build_model` is the one builder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from scanner.errors import InputError


@dataclass(frozen=True)
class ArchConfig:
    """How to build one named architecture and what input it expects."""

    name: str
    family: str  # "cifar_resnet" | "cifar_vgg" | "torchvision"
    input_size: int  # default square input side
    kwargs: dict = field(default_factory=dict)
    description: str = ""


def _cifar_resnet(depth: int) -> ArchConfig:
    n = (depth - 2) // 6
    return ArchConfig(f"resnet{depth}", "cifar_resnet", 32,
                      {"blocks": (n, n, n), "widths": (16, 32, 64)},
                      f"CIFAR ResNet-{depth} (3 stages x {n} blocks, 16/32/64 channels)")


_REGISTRY: dict[str, ArchConfig] = {}
for _d in (8, 14, 20, 32, 44, 56, 110):
    _c = _cifar_resnet(_d)
    _REGISTRY[_c.name] = _c
_REGISTRY["resnet18_cifar"] = ArchConfig(
    "resnet18_cifar", "cifar_resnet", 32, {"blocks": (2, 2, 2, 2), "widths": (64, 128, 256, 512)},
    "CIFAR ResNet-18 (3x3 stem, no max-pool, 64..512 channels)")
_REGISTRY["resnet34_cifar"] = ArchConfig(
    "resnet34_cifar", "cifar_resnet", 32, {"blocks": (3, 4, 6, 3), "widths": (64, 128, 256, 512)},
    "CIFAR ResNet-34 (3x3 stem, no max-pool)")
_REGISTRY["vgg_small"] = ArchConfig(
    "vgg_small", "cifar_vgg", 32, {"cfg": (32, "M", 64, "M", 128, 128, "M", 256)},
    "small VGG-style CIFAR net (5 conv layers, CPU-sized)")
_REGISTRY["vgg11_cifar"] = ArchConfig(
    "vgg11_cifar", "cifar_vgg", 32,
    {"cfg": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512)},
    "VGG-11 for 32x32 inputs")
for _tv in ("resnet18", "resnet34", "resnet50", "vgg11_bn", "vgg16_bn", "mobilenet_v2",
            "densenet121", "efficientnet_b0", "wide_resnet50_2"):
    _REGISTRY[_tv] = ArchConfig(_tv, "torchvision", 224, {}, f"torchvision {_tv}")


def list_archs(family: str | None = None) -> list[str]:
    """Names of known architectures, optionally of one family."""
    return sorted(n for n, c in _REGISTRY.items() if family is None or c.family == family)


def get_config(name: str) -> ArchConfig:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown architecture {name!r}",
                         hint="known: " + ", ".join(list_archs())) from None


def build_model(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Build an untrained model of a registered architecture."""
    cfg = get_config(name)
    builders: dict[str, Callable[[], nn.Module]] = {
        "cifar_resnet": lambda: _build_cifar_resnet(cfg, num_classes, in_channels),
        "cifar_vgg": lambda: _build_vgg(cfg, num_classes, in_channels),
        "torchvision": lambda: _build_torchvision(cfg, num_classes, in_channels),
    }
    return builders[cfg.family]()


def _build_cifar_resnet(cfg: ArchConfig, num_classes: int, in_channels: int) -> nn.Module:
    from scanner.models.cifar_resnet import CifarResNet

    return CifarResNet(num_classes=num_classes, in_channels=in_channels, **cfg.kwargs)


def _build_vgg(cfg: ArchConfig, num_classes: int, in_channels: int) -> nn.Module:
    from scanner.models.vgg import CifarVGG

    return CifarVGG(num_classes=num_classes, in_channels=in_channels, **cfg.kwargs)


def _build_torchvision(cfg: ArchConfig, num_classes: int, in_channels: int) -> nn.Module:
    import torchvision

    if in_channels != 3:
        raise InputError(f"{cfg.name}: torchvision architectures take 3 input channels")
    return getattr(torchvision.models, cfg.name)(weights=None, num_classes=num_classes)
