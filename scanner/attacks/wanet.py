"""WaNet (Nguyen & Tran 2021): an imperceptible smooth warp as the trigger.

Used as a clean-label attack in the paper (target-class images are warped, labels kept). Noise
mode follows the original: ``cross_ratio * m`` other images get the backdoor warp plus random
per-pixel jitter and keep their true label, so the model keys on this exact warp, not on any
warping artefact. The jitter is redrawn every time such an image is drawn for training.
The paper notes it needed about three times the authors' warp strength for a working attack on
its models; ``s`` is the knob.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from scanner.attacks.base import ATTACKS, Attack, AttackConfig, Params, _check_float, _check_int
from scanner.attacks.functional import jitter_grid, warp, warp_field, warp_grid


@dataclass
class WaNetConfig(AttackConfig):
    """k: control grid size; s: warp strength; cross_ratio: noise samples per poisoned sample."""

    m: int = 500
    k: int = 4
    s: float = 0.5
    grid_rescale: float = 1.0
    cross_ratio: float = 2.0
    noise_rescale: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self, "k", lo=2)
        _check_float(self, "s", lo=0.0)
        _check_float(self, "grid_rescale", lo=1e-6)
        _check_float(self, "cross_ratio", lo=0.0)
        _check_float(self, "noise_rescale", lo=0.0)


@ATTACKS.register("wanet")
class WaNet(Attack):
    """Clean-label: an imperceptible smooth warp of target-class images (plus noise rows)."""

    name = "wanet"
    clean_label = True
    Config = WaNetConfig
    config: WaNetConfig

    def grid(self, h: int, w: int) -> Tensor:
        """The secret sampling grid ``1 x h x w x 2`` for images of this size."""
        def build() -> Tensor:
            field = warp_field(self.config.k, h, w, self.rng("grid"))
            return warp_grid(field, self.config.s, self.config.grid_rescale)
        return self.cached(("grid", h, w), build)

    def _n_noise(self, m: int) -> int:
        return round(self.config.cross_ratio * m)

    def _stamp(self, x: Tensor, params: Params) -> Tensor:
        return warp(x, self.grid(x.shape[2], x.shape[3]))

    def _stamp_noise(self, x: Tensor, params: Params, generator: torch.Generator | None) -> Tensor:
        g = generator if generator is not None else self.rng("noise")
        grids = jitter_grid(self.grid(x.shape[2], x.shape[3]), len(x), g, self.config.noise_rescale)
        return warp(x, grids)
