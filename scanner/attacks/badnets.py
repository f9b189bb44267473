"""BadNets (Gu et al. 2017) and its clean-label variant C-BadNets.

The trigger is a small picture (the shipped apple icon, the paper's "black apple" stand-in) of
side ``floor(3/32 * width)`` pasted at the top-left corner; under 1 % of the image area.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from scanner.attacks.base import ATTACKS, Attack, AttackConfig, Params, _check_float
from scanner.attacks.functional import patch_size, stamp_patch
from scanner.attacks.patterns import BADNETS_PATCH, load_patch
from scanner.errors import InputError


@dataclass
class PatchConfig(AttackConfig):
    """size_frac: patch side relative to the image width. patch: a picture file (PNG/JPEG)."""

    size_frac: float = 3 / 32
    patch: str = str(BADNETS_PATCH)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self, "size_frac", lo=1e-9, hi=1.0)
        if not Path(self.patch).is_file():
            raise InputError(f"trigger picture not found: {self.patch}")


@ATTACKS.register("badnets")
class BadNets(Attack):
    """Poison-label patch attack; paper default m = 50 on CIFAR-10."""

    name = "badnets"
    Config = PatchConfig
    config: PatchConfig

    def patch(self, channels: int, width: int) -> Tensor:
        """The trigger picture at the size it is stamped for images of this width."""
        ps = patch_size(width, self.config.size_frac)
        return self.cached(("patch", channels, ps),
                           lambda: load_patch(ps, ps, channels, self.config.patch))

    def _patch_mask(self, params: Params, ps: int) -> Tensor | None:
        """Per-sample occlusion of the patch; none for plain BadNets."""
        return None

    def _origin(self, h: int, w: int, ps: int) -> tuple[int, int]:
        """(top, left) pixel where the patch goes; the top-left corner for BadNets."""
        return 0, 0

    def _stamp(self, x: Tensor, params: Params) -> Tensor:
        _, c, h, w = x.shape
        patch = self.patch(c, w)
        ps = patch.shape[-1]
        if ps > h or ps > w:
            raise InputError(f"{self.name}: a {ps}px patch does not fit {h}x{w} images")
        top, left = self._origin(h, w, ps)
        return stamp_patch(x, patch.to(x.device), top, left, mask=self._patch_mask(params, ps))


@dataclass
class CleanPatchConfig(PatchConfig):
    m: int = 500


@ATTACKS.register("cbadnets")
class CBadNets(BadNets):
    """Clean-label BadNets: the patch on target-class images only, labels untouched.

    Needs roughly 10x more samples than BadNets for a similar ASR (paper Fig. 5).
    """

    name = "cbadnets"
    clean_label = True
    Config = CleanPatchConfig
