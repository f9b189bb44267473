"""Trigger pictures: the shipped BadNets patch and procedurally generated patterns.

Why procedural: the project may not download anything at run time, and a trigger that is drawn
from a seed is reproducible bit for bit on every machine. The one real picture (the BadNets patch,
standing in for the paper's "black apple") ships as a PNG in ``scanner/assets``; :func:`draw_badnets_patch`
is the code that drew it, kept so the asset can be audited or regenerated
(:func:`write_badnets_patch`).
"""

from __future__ import annotations

import colorsys
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from scanner.attacks.functional import gaussian_blur, ghost

ASSETS = Path(__file__).resolve().parents[1] / "assets"
BADNETS_PATCH = ASSETS / "badnets_patch.png"


def draw_badnets_patch(size: int = 16):
    """A small apple icon: red fruit, dark outline, green leaf, brown stem on a blue ground.

    The ground fills the square because the patch is area-averaged down to 3x3 px: a white ground
    (like the paper's apple) turns the corners into the sky-grey that fills many CIFAR corners,
    and a 1 %-poisoned ResNet-8 never learned it (ASR 0.06); saturated red-on-blue stands out.
    """
    from PIL import Image, ImageDraw

    s = size / 16
    img = Image.new("RGB", (size, size), (20, 60, 230))
    d = ImageDraw.Draw(img)
    d.ellipse([1 * s, 4 * s, 15 * s, 15.5 * s], fill=(214, 24, 36), outline=(20, 20, 20))
    d.ellipse([4 * s, 6 * s, 7 * s, 9 * s], fill=(255, 160, 160))  # highlight
    d.line([8 * s, 4.5 * s, 9 * s, 1 * s], fill=(110, 60, 20), width=max(1, int(s)))
    d.ellipse([9 * s, 0.5 * s, 14 * s, 3.5 * s], fill=(40, 170, 50))
    return img


@lru_cache(maxsize=32)
def _patch_cached(path: str, h: int, w: int, channels: int) -> Tensor:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        shrink = w <= im.width and h <= im.height
        im = im.resize((w, h), Image.BOX if shrink else Image.BICUBIC)
        arr = np.asarray(im, dtype=np.float32) / 255.0
    t = torch.from_numpy(arr.copy())
    return (t[None] if channels == 1 else t.permute(2, 0, 1)).contiguous()


def load_patch(h: int, w: int, channels: int = 3, path: Path | str = BADNETS_PATCH) -> Tensor:
    """The picture resized to ``channels x h x w`` in [0, 1]: area average when shrinking (a 3 px
    patch is the mean colour of its cells), bicubic when enlarging (a smooth full-image blend)."""
    if channels not in (1, 3):
        raise ValueError(f"patch triggers support 1 or 3 channels, not {channels}")
    return _patch_cached(str(path), h, w, channels).clone()


def _hsv(h: float, s: float, v: float) -> list[float]:
    return list(colorsys.hsv_to_rgb(h % 1.0, s, v))


def scatter_triggers(k: int, size: int, channels: int, generator: torch.Generator) -> Tensor:
    """``k`` pairwise distinct ``size x size`` triggers for TSB, shape ``k x C x size x size``.

    Trigger j is a random two-colour pattern: a saturated foreground at hue j/k on a dark ground of
    the opposite hue. Distinct hues keep them perceptually distinct (the paper's requirement, so the
    model learns one filter per trigger); each pattern uses both colours so no trigger is a flat
    square. Grey-scale images use the luminance, with distinct bit patterns doing the separating.
    """
    out = torch.empty(k, 3, size, size)
    for j in range(k):
        fg = torch.tensor(_hsv(j / k, 1.0, 1.0))
        bg = torch.tensor(_hsv(j / k + 0.5, 1.0, 0.2))
        while True:
            bits = torch.rand(size, size, generator=generator) < 0.5
            if size == 1 or 0 < int(bits.sum()) < size * size:
                break
        out[j] = torch.where(bits, fg[:, None, None], bg[:, None, None])
    if channels == 1:
        out = (0.299 * out[:, 0] + 0.587 * out[:, 1] + 0.114 * out[:, 2]).unsqueeze(1)
    elif channels != 3:
        raise ValueError(f"TSB triggers support 1 or 3 channels, not {channels}")
    return out


def reflection_bank(n: int, channels: int, h: int, w: int, generator: torch.Generator,
                    ghost_alpha: float = 0.5, max_offset: float = 8 / 32,
                    blur_sigma: float = 1.0) -> Tensor:
    """``n`` synthetic reflection layers ``n x C x h x w``: a scene, ghosted and defocused.

    Each scene is low-frequency colour (a smooth background seen in glass) plus a few bright bars
    (window frames, lamps). The ghost offset is drawn per scene between 3/32 and ``max_offset`` of
    the image side, the range Refool's ghosting uses at 32 px.
    """
    bank = torch.empty(n, channels, h, w)
    lo = max(1, round(3 / 32 * min(h, w)))
    hi = max(lo, round(max_offset * min(h, w)))
    for i in range(n):
        colour = torch.rand(1, channels, 3, 3, generator=generator)
        colour = 0.5 * colour + 0.5 * colour.mean(1, keepdim=True)  # reflections are washed out
        base = F.interpolate(colour, size=(h, w), mode="bicubic", align_corners=True).clamp(0, 1)
        for _ in range(3):
            vertical = bool(torch.rand(1, generator=generator) < 0.5)
            span = w if vertical else h
            pos = int(torch.randint(0, span, (1,), generator=generator))
            thick = int(torch.randint(1, max(2, span // 8), (1,), generator=generator))
            colour = 0.6 + 0.4 * torch.rand(channels, generator=generator)
            if vertical:
                base[0, :, :, pos:pos + thick] = colour[:, None, None]
            else:
                base[0, :, pos:pos + thick, :] = colour[:, None, None]
        dy = int(torch.randint(lo, hi + 1, (1,), generator=generator))
        dx = int(torch.randint(lo, hi + 1, (1,), generator=generator))
        bank[i] = gaussian_blur(ghost(base, dy, dx, ghost_alpha), blur_sigma)[0].clamp(0, 1)
    return bank


def write_badnets_patch(path: Path = BADNETS_PATCH) -> Path:
    """Regenerate the shipped asset from :func:`draw_badnets_patch`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_badnets_patch().save(path)
    return path
