"""Refool (Liu et al. 2020): reflections as a natural-looking clean-label trigger.

Target-class images get a reflection layer (a synthetic scene, ghosted by a double shift and
defocused) blended in linear light; labels never change. The reflections are procedurally drawn
from the seed (no image downloads). The paper found weak ghosting ineffective and used a strong
effect; ``alpha`` is the reflection's weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from scanner.attacks.base import ATTACKS, Attack, AttackConfig, Params, _check_float, _check_int
from scanner.attacks.functional import reflect_blend
from scanner.attacks.patterns import reflection_bank


@dataclass
class RefoolConfig(AttackConfig):
    """alpha: reflection weight; n_reflections: size of the attacker's reflection set."""

    m: int = 500
    alpha: float = 0.3
    n_reflections: int = 8
    ghost_alpha: float = 0.5
    blur_sigma: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self, "alpha", lo=1e-6, hi=1.0)
        _check_int(self, "n_reflections", lo=1)
        _check_float(self, "ghost_alpha", lo=0.0, hi=1.0)
        _check_float(self, "blur_sigma", lo=0.0)


@ATTACKS.register("refool")
class Refool(Attack):
    """Clean-label: a ghosted, defocused reflection blended into target-class images."""

    name = "refool"
    clean_label = True
    Config = RefoolConfig
    config: RefoolConfig

    def reflections(self, c: int, h: int, w: int) -> Tensor:
        cfg = self.config
        return self.cached(("bank", c, h, w), lambda: reflection_bank(
            cfg.n_reflections, c, h, w, self.rng("reflections"), cfg.ghost_alpha,
            blur_sigma=cfg.blur_sigma))

    def _sample_params(self, n: int, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        return {"ref": torch.randint(0, self.config.n_reflections, (n,), generator=generator)}

    def _stamp(self, x: Tensor, params: Params) -> Tensor:
        bank = self.reflections(*x.shape[1:]).to(x.device)
        return reflect_blend(x, bank[params["ref"].to(x.device)], self.config.alpha)

    def _apply(self, x: Tensor) -> Tensor:
        ref = torch.randint(0, self.config.n_reflections, (len(x),), generator=self.rng("apply"))
        return self._stamp(x, {"ref": ref})
