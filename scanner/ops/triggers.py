"""Applying reversed triggers to [0,1] images (additive and mask/pattern forms)."""

from __future__ import annotations

import torch
from torch import Tensor


def apply_additive(x: Tensor, delta: Tensor) -> Tensor:
    """clamp(x + delta, 0, 1); ``delta`` broadcasts (C,H,W) or (K,1,C,H,W) over the batch."""
    return (x + delta).clamp(0.0, 1.0)


def apply_mask_pattern(x: Tensor, mask: Tensor, pattern: Tensor) -> Tensor:
    """(1 - m) * x + m * p: Neural Cleanse's blend; m in [0,1] (1,H,W), p in [0,1] (C,H,W)."""
    return (1.0 - mask) * x + mask * pattern


def tanh_to_unit(w: Tensor) -> Tensor:
    """Unconstrained parameter -> (0, 1), as Neural Cleanse parametrises mask and pattern."""
    return torch.tanh(w) / 2.0 + 0.5


def project_linf(delta: Tensor, eps: float) -> Tensor:
    """Clip a perturbation to an L-infinity ball (the bounded-trigger option)."""
    return delta.clamp(-eps, eps)
