"""Triggers seen in public model zoos ("in the wild"): BackdoorBench-style and classic variants.

Why these: a scanner tuned on BadNets' apple patch must also face the triggers that circulate in
benchmark zoos: a checkerboard grid patch, an additive (image-dependent) square, a full-image
blended watermark (Chen et al. 2017), sample-spread sparse (L0) and dense low-amplitude (L2)
patterns, and an all-to-all patch whose target depends on the label (y -> y + 1 mod K).
Each class only says what its trigger looks like; sampling, relabelling and seeding are the
base class's. Every random picture is drawn from ``seed`` (one generator per purpose) and cached
per image shape, so the same seed stamps the same trigger on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scanner.attacks.badnets import BadNets, PatchConfig
from scanner.attacks.base import ATTACKS, Attack, AttackConfig, Params, _check_float, _check_int
from scanner.attacks.functional import blend, patch_size
from scanner.attacks.patterns import load_patch
from scanner.errors import InputError

CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


def _check_corner(cfg: Any) -> None:
    if cfg.corner not in CORNERS:
        raise InputError(f"{type(cfg).__name__}.corner={cfg.corner!r} is not one of "
                         + ", ".join(CORNERS))


def corner_origin(corner: str, h: int, w: int, side: int, name: str = "") -> tuple[int, int]:
    """(top, left) of a ``side`` px square flush with ``corner`` of an ``h x w`` image."""
    if side > h or side > w:
        raise InputError(f"{name}: a {side}px trigger does not fit {h}x{w} images")
    top = h - side if corner.startswith("bottom") else 0
    left = w - side if corner.endswith("right") else 0
    return top, left


# --- grid_patch -------------------------------------------------------------------------------

@dataclass
class GridConfig(AttackConfig):
    """size_frac: patch side relative to the image width (at least ``cells`` px).
    cells: checkerboard squares per side. corner: where the patch sits."""

    size_frac: float = 3 / 32
    cells: int = 3
    corner: str = "bottom_right"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self, "size_frac", lo=1e-9, hi=1.0)
        _check_int(self, "cells", lo=1)
        _check_corner(self)


def checkerboard(cells: int, side: int, channels: int) -> Tensor:
    """``channels x side x side`` black/white board of ``cells`` squares a side, white top-left."""
    idx = (torch.arange(side) * cells) // side
    board = ((idx[:, None] + idx[None, :]) % 2 == 0).float()
    return board.expand(channels, side, side).contiguous()


@ATTACKS.register("grid_patch")
class GridPatch(BadNets):
    """BadNets with BackdoorBench's 'grid' trigger: a 3x3 black/white checkerboard in a corner."""

    name = "grid_patch"
    Config = GridConfig
    config: GridConfig  # type: ignore[assignment]

    def patch(self, channels: int, width: int) -> Tensor:
        side = max(self.config.cells, patch_size(width, self.config.size_frac))
        return self.cached(("grid", channels, side),
                           lambda: checkerboard(self.config.cells, side, channels))

    def _origin(self, h: int, w: int, ps: int) -> tuple[int, int]:
        return corner_origin(self.config.corner, h, w, ps, self.name)


# --- additive_square --------------------------------------------------------------------------

@dataclass
class AdditiveConfig(AttackConfig):
    """size_frac: square side relative to the image width. amplitude: the +/- value added to
    each pixel and channel of the square (signs fixed by ``seed``). corner: where it sits."""

    size_frac: float = 9 / 32
    amplitude: float = 0.25
    corner: str = "bottom_right"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self, "size_frac", lo=1e-9, hi=1.0)
        _check_float(self, "amplitude", lo=1e-6, hi=1.0)
        _check_corner(self)


@ATTACKS.register("additive_square")
class AdditiveSquare(Attack):
    """x + a fixed random +/-amplitude square in a corner, clipped: the stamp depends on the image."""

    name = "additive_square"
    Config = AdditiveConfig
    config: AdditiveConfig

    def pattern(self, channels: int, side: int) -> Tensor:
        """The ``channels x side x side`` additive pattern: +amplitude or -amplitude per value."""
        def build() -> Tensor:
            signs = torch.rand(channels, side, side, generator=self.rng("pattern")) < 0.5
            return torch.where(signs, 1.0, -1.0) * self.config.amplitude
        return self.cached(("pattern", channels, side), build)

    def _stamp(self, x: Tensor, params: Params) -> Tensor:
        _, c, h, w = x.shape
        side = patch_size(w, self.config.size_frac)
        top, left = corner_origin(self.config.corner, h, w, side, self.name)
        out = x.clone()
        region = out[:, :, top:top + side, left:left + side]
        region += self.pattern(c, side).to(x.device, x.dtype)
        return out.clamp_(0, 1)


# --- blend ------------------------------------------------------------------------------------

@dataclass
class BlendConfig(AttackConfig):
    """alpha: opacity of the pattern. picture: "noise" (uniform random image drawn from
    ``seed``, Chen et al.'s random pattern) or a picture file stretched to the image size."""

    alpha: float = 0.15
    picture: str = "noise"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self, "alpha", lo=1e-6, hi=1.0)
        if self.picture != "noise" and not Path(self.picture).is_file():
            raise InputError(f"blend picture not found: {self.picture}",
                             hint='use "noise" or the path of a PNG/JPEG')


@ATTACKS.register("blend")
class Blend(Attack):
    """Chen et al. 2017 blended attack: (1 - alpha) x + alpha pattern over the whole image."""

    name = "blend"
    Config = BlendConfig
    config: BlendConfig

    def pattern(self, c: int, h: int, w: int) -> Tensor:
        """The ``c x h x w`` watermark in [0, 1] (the same loader as adaptive_blend's picture)."""
        def build() -> Tensor:
            if self.config.picture == "noise":
                return torch.rand(c, h, w, generator=self.rng("pattern"))
            return load_patch(h, w, c, self.config.picture)
        return self.cached(("pattern", c, h, w), build)

    def _stamp(self, x: Tensor, params: Params) -> Tensor:
        _, c, h, w = x.shape
        return blend(x, self.pattern(c, h, w).to(x.device), self.config.alpha)


# --- l0_spread --------------------------------------------------------------------------------

@dataclass
class L0Config(AttackConfig):
    """k: pixel positions overwritten (all channels of each), spread over the whole image."""

    k: int = 40

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self, "k", lo=1)


@ATTACKS.register("l0_spread")
class L0Spread(Attack):
    """Sparse trigger: k fixed random pixel positions over the image set to fixed 0/1 colours."""

    name = "l0_spread"
    Config = L0Config
    config: L0Config

    def pixels(self, c: int, h: int, w: int) -> tuple[Tensor, Tensor]:
        """(positions, values): ``k`` distinct flat indices into ``h * w`` and the ``c x k``
        values written there, each channel 0 or 1 (a saturated colour, so the trigger stands
        out). An image that already holds a position's colour is unchanged there, so at most
        ``k`` positions change, exactly ``k`` unless the image has those exact values."""
        k = self.config.k
        if k > h * w:
            raise InputError(f"{self.name}: k={k} pixels do not fit {h}x{w} images")

        def build() -> tuple[Tensor, Tensor]:
            g = self.rng("pixels")
            pos = torch.randperm(h * w, generator=g)[:k].sort().values
            values = (torch.rand(c, k, generator=g) < 0.5).float()
            return pos, values
        return self.cached(("pixels", c, h, w), build)

    def _stamp(self, x: Tensor, params: Params) -> Tensor:
        n, c, h, w = x.shape
        pos, values = self.pixels(c, h, w)
        out = x.reshape(n, c, h * w).clone()
        out[:, :, pos.to(x.device)] = values.to(x.device, x.dtype)
        return out.view(n, c, h, w)


# --- l2_spread --------------------------------------------------------------------------------

@dataclass
class L2Config(AttackConfig):
    """norm: L2 norm of the additive pattern over all C*H*W values (before clipping), in [0, 1]
    pixel units; 3.0 on 32x32x3 is about 14/255 per value (root mean square)."""

    norm: float = 3.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self, "norm", lo=1e-6)


@ATTACKS.register("l2_spread")
class L2Spread(Attack):
    """Dense low-amplitude trigger: x + a fixed Gaussian pattern of fixed L2 norm, clipped."""

    name = "l2_spread"
    Config = L2Config
    config: L2Config

    def delta(self, c: int, h: int, w: int) -> Tensor:
        """The ``c x h x w`` additive pattern, scaled to L2 norm ``norm`` exactly (float64 math)."""
        def build() -> Tensor:
            d = torch.randn(c, h, w, generator=self.rng("delta"), dtype=torch.float64)
            return (d * (self.config.norm / torch.linalg.vector_norm(d))).float()
        return self.cached(("delta", c, h, w), build)

    def _stamp(self, x: Tensor, params: Params) -> Tensor:
        _, c, h, w = x.shape
        return (x + self.delta(c, h, w).to(x.device, x.dtype)).clamp_(0, 1)


# --- all_to_all -------------------------------------------------------------------------------

@dataclass
class AllToAllConfig(PatchConfig):
    """num_classes: K, targets are (y + 1) mod K. ``target`` has no meaning here and must stay 0."""

    num_classes: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self, "num_classes", lo=2)
        if self.target != 0:
            raise InputError(f"all_to_all has no single target (image y goes to y + 1 mod "
                             f"{self.num_classes}); leave target at 0, got {self.target}")


@ATTACKS.register("all_to_all")
class AllToAll(BadNets):
    """All-to-all BadNets: the patch sends an image of class y to (y + 1) mod num_classes."""

    name = "all_to_all"
    all_to_one = False
    Config = AllToAllConfig
    config: AllToAllConfig  # type: ignore[assignment]

    def target_of(self, y: Tensor) -> Tensor:
        k = self.config.num_classes
        if len(y) and int(y.max()) >= k:
            raise InputError(f"{self.name}: label {int(y.max())} but num_classes={k}",
                             hint="set num_classes to the number of classes of the data")
        return (y + 1) % k
