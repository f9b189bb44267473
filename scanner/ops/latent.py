"""Soft Latent Orthogonalization Loss (SLOL) and the parameter distance of Pivotal Tuning.

SLOL is vectorised through Gram matrices, so cost is O(K^2 + K*D) for the K classes present in a
batch, with no Python loop over class pairs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_EPS = 1e-8


def class_centroids(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Mean feature per class present in the batch; returns (classes, centroids K x D)."""
    classes, inverse = torch.unique(labels, sorted=True, return_inverse=True)
    k = classes.numel()
    sums = torch.zeros(k, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, inverse, features)
    counts = torch.bincount(inverse, minlength=k).clamp_min(1).to(features.dtype)
    return classes, sums / counts[:, None]


def _pair_mask(k: int, device) -> Tensor:
    return torch.triu(torch.ones(k, k, dtype=torch.bool, device=device), diagonal=1)


def pairwise_cosine_sum(c: Tensor) -> Tensor:
    """sum_{i<j} cos(c_i, c_j)."""
    n = c / c.norm(dim=1, keepdim=True).clamp_min(_EPS)
    return (n @ n.T)[_pair_mask(c.shape[0], c.device)].sum()


def direction_cosine_sum(p: Tensor, c: Tensor) -> Tensor:
    """sum_{i<j} cos(p_i - p_j, c_i - c_j), signed, via Gram matrices (no K x K x D tensor)."""
    g = p @ c.T  # <p_i, c_j>
    gp = p @ p.T
    gc = c @ c.T
    dp, dc, dg = gp.diagonal(), gc.diagonal(), g.diagonal()
    num = dg[:, None] + dg[None, :] - g - g.T  # <p_i - p_j, c_i - c_j>
    # eps inside the sqrt: the (masked) diagonal is exactly 0 and sqrt'(0) = inf would turn the
    # whole gradient into NaN through 0 * inf
    np_ = ((dp[:, None] + dp[None, :] - 2 * gp).clamp_min(0) + _EPS).sqrt()
    nc = ((dc[:, None] + dc[None, :] - 2 * gc).clamp_min(0) + _EPS).sqrt()
    cos = num / (np_ * nc).clamp_min(_EPS)
    return cos[_pair_mask(p.shape[0], p.device)].sum()


def slol_paper(pivot_centroids: Tensor, tuned_centroids: Tensor) -> tuple[Tensor, Tensor]:
    """Paper Alg. 3: (within-tuned pairwise cosine, across-model direction cosine)."""
    return pairwise_cosine_sum(tuned_centroids), direction_cosine_sum(pivot_centroids, tuned_centroids)


def parameter_distance(tuned: nn.Module, pivot: nn.Module) -> Tensor:
    """Sum of squared parameter differences divided by the number of parameters (authors' code).

    Parameters are matched by name, so ``tuned`` must be a copy of ``pivot``'s structure.
    """
    total, count = None, 0
    pivot_params = dict(pivot.named_parameters())
    for name, pt in tuned.named_parameters():
        pp = pivot_params.get(name)
        if pp is None:
            raise ValueError(f"parameter {name!r} of the tuned model is not in the pivot")
        d = (pt - pp.detach()).pow(2).sum()
        total = d if total is None else total + d
        count += pt.numel()
    if total is None:
        raise ValueError("models have no parameters")
    return total / count
