"""Queryable registry of architectures known by name (for safetensors import and training).

Each variant is a typed :class:`ArchConfig` registered in ``ARCHS``; :func:`build_model` is the
one builder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from scanner.errors import InputError
from scanner.registry import Registry


@dataclass(frozen=True)
class ArchConfig:
    """How to build one named architecture and what input it expects."""

    name: str
    family: str  # "cifar_resnet" | "cifar_vgg" | "torchvision"
    input_size: int  # default square input side
    kwargs: dict = field(default_factory=dict)
    description: str = ""


ARCHS: Registry[ArchConfig] = Registry("architecture")


def _add(cfg: ArchConfig) -> None:
    ARCHS.register(cfg.name, summary=cfg.description)(cfg)


def _cifar_resnet(depth: int) -> ArchConfig:
    n = (depth - 2) // 6
    return ArchConfig(f"resnet{depth}", "cifar_resnet", 32,
                      {"blocks": (n, n, n), "widths": (16, 32, 64)},
                      f"CIFAR ResNet-{depth} (3 stages x {n} blocks, 16/32/64 channels)")


for _d in (8, 14, 20, 32, 44, 56, 110):
    _add(_cifar_resnet(_d))
_add(ArchConfig("resnet18_cifar", "cifar_resnet", 32,
                {"blocks": (2, 2, 2, 2), "widths": (64, 128, 256, 512)},
                "CIFAR ResNet-18 (3x3 stem, no max-pool, 64..512 channels)"))
_add(ArchConfig("resnet34_cifar", "cifar_resnet", 32,
                {"blocks": (3, 4, 6, 3), "widths": (64, 128, 256, 512)},
                "CIFAR ResNet-34 (3x3 stem, no max-pool)"))
_add(ArchConfig("vgg_small", "cifar_vgg", 32, {"cfg": (32, "M", 64, "M", 128, 128, "M", 256)},
                "small VGG-style CIFAR net (5 conv layers, CPU-sized)"))
_add(ArchConfig("vgg11_cifar", "cifar_vgg", 32,
                {"cfg": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512)},
                "VGG-11 for 32x32 inputs"))
for _tv in ("resnet18", "resnet34", "resnet50", "vgg11_bn", "vgg16_bn", "mobilenet_v2",
            "densenet121", "efficientnet_b0", "wide_resnet50_2"):
    _add(ArchConfig(_tv, "torchvision", 224, {}, f"torchvision {_tv}"))


def list_archs(family: str | None = None) -> list[str]:
    """Names of known architectures, optionally of one family."""
    return sorted(e.name for e in ARCHS if family is None or e.obj.family == family)


def get_config(name: str) -> ArchConfig:
    """The architecture registered under ``name``; InputError naming the known ones."""
    return ARCHS.get(name)


def build_model(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Build an untrained model of a registered architecture."""
    cfg = get_config(name)
    return _BUILDERS[cfg.family](cfg, num_classes, in_channels)


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


_BUILDERS: dict[str, Callable[[ArchConfig, int, int], nn.Module]] = {
    "cifar_resnet": _build_cifar_resnet,
    "cifar_vgg": _build_vgg,
    "torchvision": _build_torchvision,
}
