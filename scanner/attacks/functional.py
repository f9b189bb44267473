"""Pure trigger mathematics on float NCHW tensors in [0, 1].

Why a separate module: every attack is "choose samples + apply one of these functions", and the
functions are where silent off-by-one or range bugs hide. Kept free of state, randomness is always
an explicit ``torch.Generator`` argument, and nothing here mutates its inputs, so each can be
checked on a 2x2 tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def patch_size(width: int, frac: float = 3 / 32) -> int:
    """Side of a square patch trigger: ``floor(frac * width)``, at least one pixel.

    The paper sizes the BadNets patch relative to the image (3 px at 32 px) so the same attack
    definition covers CIFAR and ImageNet resolutions.
    """
    return max(1, int(frac * width))


def stamp_patch(x: Tensor, patch: Tensor, top: Tensor | int = 0, left: Tensor | int = 0,
                mask: Tensor | None = None) -> Tensor:
    """Paste ``patch`` into every image of ``x`` with its top-left corner at (``top``, ``left``).

    ``patch`` is ``C x p x q`` (one patch for all) or ``N x C x p x q`` (one per image); ``top`` and
    ``left`` are ints or length-N tensors so scattered triggers (TSB) need no Python loop. ``mask``
    (``p x q`` or ``N x 1 x p x q``, values in [0, 1]) keeps the image where it is 0, which is how
    occluded (Adaptive-Patch) triggers are drawn.
    """
    n, c, h, w = x.shape
    p, q = patch.shape[-2:]
    patches = patch.expand(n, c, p, q) if patch.dim() == 3 else patch
    top_t = torch.as_tensor(top, device=x.device).expand(n).long()
    left_t = torch.as_tensor(left, device=x.device).expand(n).long()
    if n and (top_t.min() < 0 or left_t.min() < 0 or top_t.max() + p > h or left_t.max() + q > w):
        raise ValueError(f"patch {p}x{q} at the given positions does not fit a {h}x{w} image")
    rows = top_t[:, None] + torch.arange(p, device=x.device)  # N x p
    cols = left_t[:, None] + torch.arange(q, device=x.device)  # N x q
    bi = torch.arange(n, device=x.device)[:, None, None]
    ri, ci = rows[:, :, None], cols[:, None, :]
    out = x.clone()
    region = out[bi, :, ri, ci]  # N x p x q x C
    new = patches.to(x.dtype).permute(0, 2, 3, 1)
    if mask is not None:
        m = mask.to(x.device, x.dtype).expand(n, 1, p, q).permute(0, 2, 3, 1)
        new = m * new + (1 - m) * region
    out[bi, :, ri, ci] = new
    return out


def blend(x: Tensor, pattern: Tensor, alpha: float, mask: Tensor | None = None) -> Tensor:
    """``(1 - a) x + a pattern`` with per-pixel opacity ``a = alpha * mask`` (mask defaults to 1).

    A convex combination, so the result stays in [0, 1] without clamping.
    """
    a = torch.as_tensor(alpha, dtype=x.dtype, device=x.device)
    if mask is not None:
        a = a * mask.to(x.dtype)
    return (1 - a) * x + a * pattern.to(x.dtype)


def grid_mask(keep: Tensor, h: int, w: int) -> Tensor:
    """Upsample an ``N x s x s`` keep-grid to a ``N x 1 x h x w`` {0, 1} mask (nearest cell).

    Pixel i belongs to cell ``floor(i * s / h)``; when h < s (a 3 px patch with a 4x4 grid) some
    cells cover no pixel, which simply means fewer effective squares.
    """
    n, s, t = keep.shape
    ri = (torch.arange(h, device=keep.device) * s) // h
    ci = (torch.arange(w, device=keep.device) * t) // w
    return keep[:, ri][:, :, ci].unsqueeze(1).float()


def random_keep_grid(n: int, s: int, keep_prob: float, generator: torch.Generator,
                     h: int | None = None, w: int | None = None) -> Tensor:
    """``N x s x s`` Bernoulli(keep_prob) grids, redrawn until each keeps at least one visible cell.

    An all-occluded grid would leave a "poisoned" image unchanged: a silent no-op sample. Visible
    means the cell covers a pixel of an ``h x w`` trigger (see :func:`grid_mask`).
    """
    vis = torch.ones(s, s, dtype=torch.bool)
    if h is not None and w is not None:
        vis = grid_mask(torch.eye(s * s).reshape(s * s, s, s), h, w).flatten(1).amax(1) > 0
        vis = vis.reshape(s, s)
    keep = torch.rand(n, s, s, generator=generator) < keep_prob
    for _ in range(1000):
        empty = ~(keep & vis).flatten(1).any(1)
        if not empty.any():
            return keep
        keep[empty] = torch.rand(int(empty.sum()), s, s, generator=generator) < keep_prob
    raise ValueError(f"keep_prob={keep_prob} too small to draw a non-empty {s}x{s} grid")


# ---------------------------------------------------------------------------------------------
# WaNet (Nguyen & Tran 2021): a smooth random warping field applied with grid_sample.

def identity_grid(h: int, w: int) -> Tensor:
    """``1 x h x w x 2`` sampling grid in grid_sample's (x, y) order that reproduces the image."""
    ys = torch.linspace(-1, 1, h)
    xs = torch.linspace(-1, 1, w)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), dim=-1)[None]


def warp_field(k: int, h: int, w: int, generator: torch.Generator) -> Tensor:
    """WaNet's control field: ``k x k`` uniform noise normalised to mean |.| = 1, bicubic to h x w.

    Returns ``1 x h x w x 2`` in pixel units (before the strength ``s`` and the /size scaling).
    """
    ins = torch.rand(1, 2, k, k, generator=generator) * 2 - 1
    ins = ins / ins.abs().mean()
    field = F.interpolate(ins, size=(h, w), mode="bicubic", align_corners=True)
    return field.permute(0, 2, 3, 1)


def warp_grid(field: Tensor, s: float, grid_rescale: float = 1.0) -> Tensor:
    """Sampling grid ``clamp((identity + s * field / size) * grid_rescale, -1, 1)``.

    ``s = 0`` and ``grid_rescale = 1`` give the identity grid, the property the tests pin down.
    """
    _, h, w, _ = field.shape
    scale = torch.tensor([w, h], dtype=field.dtype)
    return ((identity_grid(h, w) + s * field / scale) * grid_rescale).clamp(-1, 1)


def warp(x: Tensor, grid: Tensor) -> Tensor:
    """Resample ``x`` along ``grid`` (``1`` or ``N x h x w x 2``); bilinear, so values stay in range."""
    g = grid.to(device=x.device, dtype=x.dtype).expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, g, mode="bilinear", padding_mode="border", align_corners=True)


def jitter_grid(grid: Tensor, n: int, generator: torch.Generator, rescale: float = 2.0) -> Tensor:
    """WaNet's "noise mode" grids: the backdoor grid plus U(-1, 1)*rescale/2 pixel jitter each.

    Training on such samples with their true label teaches the model that *a* warp is not the
    trigger, only *the* warp is.
    """
    _, h, w, _ = grid.shape
    noise = torch.rand(n, h, w, 2, generator=generator) * rescale - rescale / 2
    scale = torch.tensor([w, h], dtype=grid.dtype)
    return (grid + noise / scale).clamp(-1, 1)


# ---------------------------------------------------------------------------------------------
# Refool (Liu et al. 2020): reflection images blended in linear light, with a ghosting kernel.

def ghost(r: Tensor, dy: int, dx: int, ghost_alpha: float = 0.5) -> Tensor:
    """Double image of a reflection layer: ``ghost_alpha * r + (1 - ghost_alpha) * shift(r)``.

    The second copy is shifted by (dy, dx) with edge replication, as a thick glass pane would.
    """
    if dy == 0 and dx == 0:
        return r.clone()
    pad = (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0))
    padded = F.pad(r, pad, mode="replicate")
    h, w = r.shape[-2:]
    top, left = max(-dy, 0), max(-dx, 0)
    shifted = padded[..., top:top + h, left:left + w]
    return ghost_alpha * r + (1 - ghost_alpha) * shifted


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur (reflections are out of focus); ``sigma <= 0`` returns a copy."""
    if sigma <= 0:
        return x.clone()
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    out = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"),
                   k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"),
                    k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def reflect_blend(x: Tensor, reflection: Tensor, alpha: float, gamma: float = 2.2) -> Tensor:
    """Mix transmission and reflection in linear light: ``((1-a) x^g + a r^g)^(1/g)``.

    Light adds in linear space, not in sRGB; the convex mix keeps the result inside [0, 1].
    """
    lin = (1 - alpha) * x.clamp(0, 1).pow(gamma) + alpha * reflection.to(x.dtype).clamp(0, 1).pow(gamma)
    return lin.clamp(0, 1).pow(1 / gamma)


# ---------------------------------------------------------------------------------------------
# Adversarial clean-label (Turner et al. 2018 as re-implemented by the paper's authors).

def pgd_targeted(model: nn.Module, x: Tensor, target: int, eps: float, step: float, steps: int,
                 generator: torch.Generator | None = None) -> Tensor:
    """L-inf PGD towards ``target`` from a uniform random start inside the eps-ball.

    The random start comes from ``generator`` so that the same images give the same trigger.
    Runs with gradients enabled even under an outer ``no_grad``; ``model`` is not modified.
    """
    if steps < 0 or eps < 0:
        raise ValueError("PGD needs eps >= 0 and steps >= 0")
    start = (torch.rand(x.shape, generator=generator) * 2 - 1).to(x.device, x.dtype) * eps
    adv = (x + start).clamp(0, 1)
    labels = torch.full((x.shape[0],), int(target), dtype=torch.long, device=x.device)
    with torch.enable_grad():
        for _ in range(steps):
            adv = adv.detach().requires_grad_(True)
            loss = F.cross_entropy(model(adv), labels)
            (grad,) = torch.autograd.grad(loss, adv)
            adv = adv.detach() - step * grad.sign()
            adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    return adv.detach()
