"""Trigger-Scattering Backdoor (the paper's adaptive attack, Alg. 7).

Why: Pivotal Tuning weakens a backdoor's association without erasing it. TSB trains k small,
perceptually distinct triggers one at a time (one random trigger at a random place per poisoned
image), so each is only weakly linked to the target; at inference all k are stamped at once and
the weak associations add up.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from scanner.attacks.base import ATTACKS, Attack, AttackConfig, Params, _check_float, _check_int
from scanner.attacks.functional import patch_size, stamp_patch
from scanner.attacks.patterns import scatter_triggers
from scanner.errors import InputError


@dataclass
class TSBConfig(AttackConfig):
    """k: number of triggers; size_frac: each trigger's side relative to the image width."""

    m: int = 1000
    k: int = 8
    size_frac: float = 3 / 32

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self, "k", lo=1)
        _check_float(self, "size_frac", lo=1e-9, hi=1.0)


@ATTACKS.register("tsb")
class TSB(Attack):
    """Adaptive: k small triggers, one per poisoned image in training, all k at inference."""

    name = "tsb"
    Config = TSBConfig
    config: TSBConfig

    def triggers(self, channels: int, width: int) -> Tensor:
        """The k secret triggers, ``k x C x p x p``."""
        ps = patch_size(width, self.config.size_frac)
        return self.cached(("triggers", channels, ps), lambda: scatter_triggers(
            self.config.k, ps, channels, self.rng("triggers")))

    def _sample_params(self, n: int, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        c, h, w = shape
        ps = patch_size(w, self.config.size_frac)
        if ps > h:
            raise InputError(f"tsb: a {ps}px trigger does not fit {h}x{w} images")
        return {"tid": torch.randint(0, self.config.k, (n,), generator=generator),
                "top": torch.randint(0, h - ps + 1, (n,), generator=generator),
                "left": torch.randint(0, w - ps + 1, (n,), generator=generator)}

    def _stamp(self, x: Tensor, params: Params) -> Tensor:
        t = self.triggers(x.shape[1], x.shape[3]).to(x.device)
        return stamp_patch(x, t[params["tid"].to(x.device)], params["top"], params["left"])

    def _apply(self, x: Tensor) -> Tensor:
        """All k triggers, each in its own cell of a grid of trigger-sized cells (no overlap)."""
        n, c, h, w = x.shape
        t = self.triggers(c, w).to(x.device)
        ps = t.shape[-1]
        gh, gw = h // ps, w // ps
        if gh * gw < self.config.k:
            raise InputError(f"tsb: {self.config.k} triggers of {ps}px do not fit {h}x{w} images "
                             "without overlapping")
        cells = torch.rand(n, gh * gw, generator=self.rng("apply")).argsort(dim=1)[:, :self.config.k]
        out = x
        for j in range(self.config.k):
            top, left = (cells[:, j] // gw) * ps, (cells[:, j] % gw) * ps
            out = stamp_patch(out, t[j], top, left)
        return out
