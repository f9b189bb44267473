"""Adaptive-Patch and Adaptive-Blend (Qi et al. 2023, "Revisiting the assumption of latent
separability"), as configured in the paper's App. A.2.

Why they exist: defenses that cluster latent features separate BadNets poison easily. These
attacks blur that separation two ways: the trigger seen in training is randomly occluded
(4x4 grid, each square kept with p = 0.5) while the full trigger is used at inference, and half of
the poisoned samples keep their true label (conservatism 0.5, "regularisation" samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from scanner.attacks.badnets import BadNets, PatchConfig
from scanner.attacks.base import ATTACKS, Attack, AttackConfig, Params, _check_float, _check_int
from scanner.attacks.functional import blend, grid_mask, patch_size, random_keep_grid
from scanner.attacks.patterns import BADNETS_PATCH, load_patch


@dataclass
class OcclusionConfig(AttackConfig):
    """grid: squares per side; keep_prob: chance a square is kept while poisoning."""

    conservatism: float = 0.5
    grid: int = 4
    keep_prob: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self, "grid", lo=1)
        _check_float(self, "keep_prob", lo=1e-6, hi=1.0)


class _Occluded:
    """Shared by both adaptive attacks: one keep-grid per poisoned sample, fixed at poisoning."""

    config: OcclusionConfig

    def _trigger_hw(self, shape: tuple[int, ...]) -> tuple[int, int]:
        raise NotImplementedError

    def _sample_params(self, n: int, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        h, w = self._trigger_hw(shape)
        keep = random_keep_grid(n, self.config.grid, self.config.keep_prob, generator, h, w)
        return {"keep": keep}

    def _occlusion(self, params: Params, h: int, w: int) -> Tensor | None:
        """The ``N x 1 x h x w`` mask of kept squares, or None (full trigger) without params."""
        if "keep" not in params:
            return None
        return grid_mask(params["keep"], h, w)


@dataclass
class AdaptivePatchConfig(PatchConfig, OcclusionConfig):
    conservatism: float = 0.5  # restated: PatchConfig's inherited 0.0 would win in the MRO


@ATTACKS.register("adaptive_patch")
class AdaptivePatch(_Occluded, BadNets):
    """The BadNets patch, occluded square by square during poisoning; full patch at inference."""

    name = "adaptive_patch"
    Config = AdaptivePatchConfig

    def _trigger_hw(self, shape: tuple[int, ...]) -> tuple[int, int]:
        ps = patch_size(shape[-1], self.config.size_frac)
        return ps, ps

    def _patch_mask(self, params: Params, ps: int) -> Tensor | None:
        return self._occlusion(params, ps, ps)


@dataclass
class AdaptiveBlendConfig(OcclusionConfig):
    """alpha: opacity of the full-image trigger picture."""

    alpha: float = 0.3
    picture: str = str(BADNETS_PATCH)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self, "alpha", lo=1e-6, hi=1.0)


@ATTACKS.register("adaptive_blend")
class AdaptiveBlend(_Occluded, Attack):
    """A picture blended over the whole image at opacity alpha, occluded during poisoning."""

    name = "adaptive_blend"
    Config = AdaptiveBlendConfig
    config: AdaptiveBlendConfig

    def _trigger_hw(self, shape: tuple[int, ...]) -> tuple[int, int]:
        return shape[-2], shape[-1]

    def pattern(self, c: int, h: int, w: int) -> Tensor:
        return self.cached(("pattern", c, h, w), lambda: load_patch(h, w, c, self.config.picture))

    def _stamp(self, x: Tensor, params: Params) -> Tensor:
        _, c, h, w = x.shape
        mask = self._occlusion(params, h, w)
        return blend(x, self.pattern(c, h, w).to(x.device), self.config.alpha,
                     None if mask is None else mask.to(x.device))
