"""Calibrated Trigger Inversion (paper Sec. 4.2, Alg. 4), with a bounded trigger.

For each class c a trigger is optimised so that the suspect model (the pivot) predicts c while
the repaired copy keeps the true label: CE(pivot(x'), c) + beta * CE(tuned(x'), y), over trusted
images with y != c. Score_c = ASR_pivot(c) - ASR_tuned(c) on held-out images.

Why bounded: an unbounded additive trigger finds, for every class, a universal perturbation that
separates two slightly different models (flat scores 0.7-0.85 in our probe). The default is
Neural Cleanse's mask + pattern with its L1 cost schedule, so a trigger must be small to succeed;
an L-inf bounded additive trigger is the alternative (``form="additive"``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from scanner.classifier import SplitClassifier
from scanner.detectors.inversion import (InversionConfig, ProgressFn, ce_rows, frozen,
                                         invert_triggers, trigger_success)
from scanner.detectors.result import ClassScore, DetectionResult
from scanner.ops.metrics import anomaly_index


@dataclass
class CTIConfig:
    inversion: InversionConfig = field(default_factory=InversionConfig)
    tuned_weight: float = 0.5
    score: str = "max"  # "max": max_c Score_c ; "mad": max anomaly index of Score_c
    flag_threshold: float = 0.5  # per-class score that names a class as flagged


def cti_detect(pivot: SplitClassifier, tuned: SplitClassifier, x_tune: Tensor, y_tune: Tensor,
               x_held: Tensor, y_held: Tensor, num_classes: int, cfg: CTIConfig, *,
               device: torch.device | None = None,
               progress: ProgressFn | None = None) -> DetectionResult:
    t0 = time.perf_counter()
    device = device or next(pivot.parameters()).device
    pivot, tuned = pivot.to(device), tuned.to(device)
    beta = cfg.tuned_weight

    def row_loss(xk: Tensor, c_rows: Tensor, y_rows: Tensor):
        lp = pivot(xk)
        lt = tuned(xk)
        return ce_rows(lp, c_rows) + beta * ce_rows(lt, y_rows), lp.argmax(-1) == c_rows

    classes = list(range(num_classes))
    with frozen(pivot, tuned):
        trig = invert_triggers(row_loss, x_tune, y_tune, classes, cfg.inversion, device=device,
                               progress=progress)
        asr_p = trigger_success(pivot, trig, x_held, y_held)
        asr_t = trigger_success(tuned, trig, x_held, y_held)
    raw = np.array([p - t for p, t in zip(asr_p, asr_t)])
    idx = anomaly_index(raw)
    l1 = trig.mask_l1()
    per = [ClassScore(c, float(raw[c]), asr_p[c], asr_t[c], l1[c], float(idx[c])) for c in classes]
    finite = idx[np.isfinite(idx)]
    model_score = float(raw.max()) if cfg.score == "max" else float(
        finite.max() if finite.size else 0.0)
    flagged = [c for c in classes if raw[c] >= cfg.flag_threshold]
    return DetectionResult("cti", model_score, per, flagged, trig, time.perf_counter() - t0,
                           extra={"score_rule": cfg.score})
