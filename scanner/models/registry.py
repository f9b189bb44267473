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
    family: str  # a key of _BUILDERS: "cifar_resnet", "cifar_wrn", "keras_cnn", "torchvision", ...
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
# Families that look like third-party CIFAR models found in the wild (parameter counts for 10
# classes; tests/test_models_wild.py checks them).
_add(ArchConfig("wrn16_2", "cifar_wrn", 32, {"depth": 16, "widen": 2},
                "pre-activation WRN-16-2 (BN-ReLU-conv), 0.69 M parameters"))
_add(ArchConfig("wrn16_4", "cifar_wrn", 32, {"depth": 16, "widen": 4},
                "pre-activation WRN-16-4 (BN-ReLU-conv), 2.75 M parameters"))
_add(ArchConfig("vgg_elu", "cifar_vgg_elu", 32,
                {"cfg": (32, "M", 64, "M", 128, 128, "M", 256), "act": "elu", "bn": False},
                "small VGG-style net with ELU and no BN (5 conv layers), 0.54 M parameters"))
_add(ArchConfig("keras_cnn", "keras_cnn", 32, {"widths": (32, 64), "hidden": 128},
                "Keras-style CNN (conv-ReLU-BN, TF 'same' stride-2 pads, dropout, dense head), "
                "0.10 M parameters"))
_add(ArchConfig("resnet_nobn", "cifar_resnet_nobn", 32, {"blocks": (2, 2, 2)},
                "BN-free Fixup ResNet-14 (scalar biases/multipliers, zero-init branch ends), "
                "0.17 M parameters"))
_add(ArchConfig("lenet", "lenet", 32, {},
                "LeNet-5 (conv5-ReLU-maxpool x2, 120-84 dense, ReLU), 0.06 M parameters"))
_add(ArchConfig("mobilenet_cifar", "mobilenet_cifar", 32, {},
                "width-reduced MobileNetV2 for 32x32 (inverted residuals, BN, ReLU6), "
                "0.60 M parameters"))
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


def _build_wrn(cfg: ArchConfig, num_classes: int, in_channels: int) -> nn.Module:
    from scanner.models.wrn import WideResNet

    return WideResNet(num_classes=num_classes, in_channels=in_channels, **cfg.kwargs)


def _build_keras_cnn(cfg: ArchConfig, num_classes: int, in_channels: int) -> nn.Module:
    from scanner.models.keras_cnn import KerasCNN

    return KerasCNN(num_classes=num_classes, in_channels=in_channels, **cfg.kwargs)


def _build_fixup_resnet(cfg: ArchConfig, num_classes: int, in_channels: int) -> nn.Module:
    from scanner.models.fixup_resnet import FixupResNet

    return FixupResNet(num_classes=num_classes, in_channels=in_channels, **cfg.kwargs)


def _build_lenet(cfg: ArchConfig, num_classes: int, in_channels: int) -> nn.Module:
    from scanner.models.lenet import LeNet5

    return LeNet5(num_classes=num_classes, in_channels=in_channels, **cfg.kwargs)


def _build_mobilenet_cifar(cfg: ArchConfig, num_classes: int, in_channels: int) -> nn.Module:
    from scanner.models.mobilenet_cifar import MobileNetV2Cifar

    return MobileNetV2Cifar(num_classes=num_classes, in_channels=in_channels, **cfg.kwargs)


def _build_torchvision(cfg: ArchConfig, num_classes: int, in_channels: int) -> nn.Module:
    import torchvision

    if in_channels != 3:
        raise InputError(f"{cfg.name}: torchvision architectures take 3 input channels")
    return getattr(torchvision.models, cfg.name)(weights=None, num_classes=num_classes)


_BUILDERS: dict[str, Callable[[ArchConfig, int, int], nn.Module]] = {
    "cifar_resnet": _build_cifar_resnet,
    "cifar_vgg": _build_vgg,
    "cifar_vgg_elu": _build_vgg,  # same builder; its own family so zoos can pick it apart
    "cifar_wrn": _build_wrn,
    "keras_cnn": _build_keras_cnn,
    "cifar_resnet_nobn": _build_fixup_resnet,
    "lenet": _build_lenet,
    "mobilenet_cifar": _build_mobilenet_cifar,
    "torchvision": _build_torchvision,
}
