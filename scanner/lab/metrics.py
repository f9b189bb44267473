"""Game-level metrics on top of :mod:`scanner.ops.metrics`: the paper's η (robustness under a
clean-accuracy budget Δ) and ROC AUC with an uncertainty over models.

Definitions used throughout ``scanner.lab`` (paper §3, §5.2):

- CDA: accuracy on clean test images; ASR: fraction of triggered test images whose true label is
  not the target that are predicted as the target (``scanner.ops.metrics.attack_success_rate``).
- Robustness / defense effectiveness η of one run: the lowest ASR over the repair's checkpoints
  whose *test* CDA is at most Δ below the unrepaired model's test CDA (the step-0 checkpoint is
  the unrepaired model, so η <= its ASR). Reported η is the mean over repeats (seeds).
- Data efficiency v_r: that η when the defender holds r trusted images, r given as a fraction of
  the training-set size (paper Table 3: r ∈ {1 %, 2.5 %, 5 %}).
- Detectability ρ_m: ROC AUC of the detector's model score over clean (label 0) and backdoored
  (label 1) models trained the same way; its uncertainty is a stratified bootstrap over models.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from scanner.ops.metrics import roc_auc

EPS = 1e-9  # CDA values are k/N fractions: compare budgets with a little slack


def select_eta(trajectory: Sequence[dict], delta: float = 0.02, pivot_cda: float | None = None,
               cda_key: str = "test_cda", asr_key: str = "asr") -> dict:
    """η of one repair run: the lowest ASR among checkpoints with CDA >= pivot CDA - Δ.

    ``trajectory``: checkpoints as dicts (step, ``cda_key``, ``asr_key``); the first one is the
    unrepaired model unless ``pivot_cda`` is given. Ties on ASR go to the higher CDA, then the
    earlier step. Returns ``{"eta", "step", "cda", "eligible"}`` (eligible: checkpoints in budget).
    """
    if not trajectory:
        raise ValueError("select_eta: empty trajectory")
    base = trajectory[0][cda_key] if pivot_cda is None else pivot_cda
    floor = base - delta - EPS
    ok = [c for c in trajectory if c.get(cda_key) is not None and c.get(asr_key) is not None
          and c[cda_key] >= floor and not math.isnan(c[asr_key])]
    if not ok:
        return {"eta": float("nan"), "step": None, "cda": float("nan"), "eligible": 0}
    best = min(ok, key=lambda c: (c[asr_key], -c[cda_key], c.get("step", 0)))
    return {"eta": float(best[asr_key]), "step": best.get("step"), "cda": float(best[cda_key]),
            "eligible": len(ok)}


def auc_with_uncertainty(scores: Sequence[float], labels: Sequence[int], *, n_boot: int = 1000,
                         seed: int = 0, level: float = 0.95) -> dict:
    """ROC AUC and its bootstrap uncertainty over models.

    Clean and backdoored models are resampled separately (with replacement, ``n_boot`` draws) so
    every draw keeps the class balance; ``std`` is the bootstrap standard error and
    ``ci_low``/``ci_high`` the percentile interval at ``level``. With a single model per class
    the AUC is 0, 0.5 or 1 and the bootstrap says nothing (std 0): read ``n_pos``/``n_neg``.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    keep = ~np.isnan(s)
    s, y = s[keep], y[keep]
    auc = roc_auc(s, y)
    pos, neg = s[y], s[~y]
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for b in range(n_boot):
        bp = pos[rng.integers(0, len(pos), len(pos))]
        bn = neg[rng.integers(0, len(neg), len(neg))]
        greater = (bp[:, None] > bn[None, :]).sum()
        ties = (bp[:, None] == bn[None, :]).sum()
        draws[b] = (greater + 0.5 * ties) / (len(bp) * len(bn))
    a = (1 - level) / 2
    return {"auc": auc, "std": float(draws.std(ddof=1)) if n_boot > 1 else 0.0,
            "ci_low": float(np.quantile(draws, a)), "ci_high": float(np.quantile(draws, 1 - a)),
            "n_pos": int(len(pos)), "n_neg": int(len(neg)), "n_dropped": int((~keep).sum()),
            "method": f"stratified bootstrap over models, {n_boot} draws"}


def mean_std(values: Iterable[float | None]) -> tuple[float, float, int]:
    """Mean, sample std (0 for one value) and count of the finite values; NaN mean when none."""
    v = np.array([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)
