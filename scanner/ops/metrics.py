"""Metrics of the games, repairs and detectors: accuracy, ASR, anomaly index, ROC AUC."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

MAD_CONSISTENCY = 1.4826  # makes the MAD a consistent estimator of a normal's std


def accuracy(pred: Tensor, labels: Tensor) -> float:
    return float((pred == labels).float().mean()) if labels.numel() else float("nan")


def within_drop(value: float, reference: float, max_drop: float) -> bool:
    """``value`` is at most ``max_drop`` below ``reference``, a drop of exactly ``max_drop``
    included.

    Why the tolerance: accuracies are counts over n images held as floats. With 100 held-out
    images, 0.73 -> 0.71 is exactly the 2-point budget, yet with accuracies held as float32 means
    0.73 - 0.02 > 0.71, so an exact budget-sized drop was rejected and a repair could keep nothing
    (RESULTS 3d). 1e-6 is far below one image in any realistic split.
    """
    return value >= reference - max_drop - 1e-6


def paired_drop_se(pred_ref: Tensor, pred_new: Tensor, labels: Tensor) -> float:
    """Standard error of accuracy(ref) - accuracy(new) measured on the same images.

    Why: a repair's Delta rule compares two models on one small held-out set. The per-image
    differences (+1 the reference alone is right, -1 the new model alone, 0 both or neither) give
    the honest uncertainty of that drop; with 100 images it can exceed a 2-point budget, and
    the user should see that next to the drop (RESULTS 3e). NaN with fewer than two images.
    """
    n = labels.numel()
    if n < 2:
        return float("nan")
    d = (pred_ref == labels).double() - (pred_new == labels).double()
    return float(d.std(unbiased=True) / n ** 0.5)


def attack_success_rate(pred: Tensor, labels: Tensor, target: int) -> float:
    """Fraction of images whose true label is not ``target`` that are predicted as ``target``."""
    keep = labels != target
    if not bool(keep.any()):
        return float("nan")
    return float((pred[keep] == target).float().mean())


def anomaly_index(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Neural Cleanse's MAD anomaly index |v - median| / (1.4826 * MAD), signed (negative = below)."""
    v = np.asarray(values, dtype=np.float64)
    med = np.median(v)
    mad = MAD_CONSISTENCY * np.median(np.abs(v - med))
    if mad == 0:
        return np.where(v == med, 0.0, np.sign(v - med) * np.inf)
    return (v - med) / mad


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (probability a positive outranks a negative; ties count half)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("ROC AUC needs at least one positive and one negative")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))
