"""Calibrated Trigger Inversion (paper Sec. 4.2, Alg. 4), with a bounded trigger and a size score.

For each class c a trigger is optimised so that the suspect model (the pivot) predicts c while
the repaired copy keeps the true label: CE(pivot(x'), c) + beta * CE(tuned(x'), y), over trusted
images with y != c. The gap_c = ASR_pivot(c) - ASR_tuned(c) on held-out images says whether the
trigger is one the repair removed.

Why bounded: an unbounded additive trigger finds, for every class, a universal perturbation that
separates two slightly different models (flat scores 0.7-0.85 in our probe). The default is
Neural Cleanse's mask + pattern with its L1 cost schedule, so a trigger must be small to succeed;
an L-inf bounded additive trigger is the alternative (``InversionConfig.form="additive"``).

Why the score is the trigger's size and not the paper's max_c gap_c:
with a mask the cost schedule enlarges every class's trigger until it works, and once the
trigger is large the tuned copy resists it too, so every class ends with a gap near 1 (a
ResNet-20 backdoored at 1 %: gaps 0.77-0.94 on all ten classes, the top one on the wrong class;
on a 12-model zoo, clean models 0.73-0.94 and backdoored 0.91-0.99, README/RESULTS). What the
calibrated objective does change is how *small* a working trigger can be: a backdoor target
keeps its tiny trigger (the pivot obeys it and the repair removed it), while every other class
must grow one large enough to fool the pivot and not the tuned copy, and a clean model's
naturally easy classes (a truck's reversed trigger is small on clean CIFAR models too) are no
longer easy, because the tuned copy falls for the same natural feature. So the score is the
low-side MAD index of log L1 over classes, as the ``mask`` detector uses, but
counted only for classes whose trigger is calibrated (gap_c >= ``min_gap``): a small trigger
that the repaired copy obeys as well is a natural feature, not a backdoor. The flag rule is the
textbook modified-z outlier bound 3.5, the number the ``mask`` and ``ratio`` detectors use;
neither it nor ``min_gap`` was fitted to a model.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from scanner.detectors.base import Detector
from scanner.detectors.inversion import (InversionConfig, ce_rows, invert_triggers,
                                         trigger_success)
from scanner.detectors.registry import DETECTORS
from scanner.detectors.result import ClassScore, DetectionResult, splice
from scanner.ops.metrics import anomaly_index

SIZE_THRESHOLD = 3.5  # modified-z outlier rule (Iglewicz & Hoaglin), as mask/ratio


def cti_scores(asr_pivot: np.ndarray, asr_tuned: np.ndarray, l1: np.ndarray,
               min_gap: float = 0.5) -> tuple[np.ndarray, float]:
    """Per-class scores and the model score from one CTI run (pure; higher = more suspicious).

    A calibrated class (gap = ASR_pivot - ASR_tuned >= min_gap) scores its low-side log-L1 MAD
    index; any other class scores min(index, 0), so a small trigger that the repaired copy obeys
    too cannot raise the alarm. The model score is max(0, max per-class score).
    """
    gap = np.asarray(asr_pivot, dtype=np.float64) - np.asarray(asr_tuned, dtype=np.float64)
    size_idx = -anomaly_index(np.log(np.maximum(np.asarray(l1, dtype=np.float64), 1e-6)))
    per = np.where(gap >= min_gap, size_idx, np.minimum(size_idx, 0.0))
    finite = per[np.isfinite(per)]
    return per, float(max(0.0, finite.max())) if finite.size else 0.0


@DETECTORS.register("cti", summary="Calibrated Trigger Inversion: triggers the repaired copy "
                                   "resists, log-MAD outlier test (experimental)")
class CTIDetector(Detector):
    """Invert every class against the model (pivot) and its repaired copy (tuned) at once."""

    name = "cti"
    needs_repair = True
    phase = "calibrated trigger inversion"
    default_threshold = SIZE_THRESHOLD

    def __init__(self, inversion: InversionConfig | None = None, threshold: float | None = None,
                 *, tuned_weight: float = 0.5, min_gap: float = 0.5) -> None:
        super().__init__(inversion, threshold)
        self.tuned_weight = tuned_weight  # beta: weight of the tuned copy's CE(true label)
        self.min_gap = min_gap  # a class counts only if ASR_pivot - ASR_tuned >= this

    def forward(self, model, split, num_classes, classes, *, repaired, device, progress,
                reference) -> DetectionResult:
        beta = self.tuned_weight

        def row_loss(xk: Tensor, c_rows: Tensor, y_rows: Tensor):
            lp = model(xk)
            lt = repaired(xk)
            return ce_rows(lp, c_rows) + beta * ce_rows(lt, y_rows), lp.argmax(-1) == c_rows

        xh, yh = split.held.x, split.held.y
        trig = invert_triggers(row_loss, split.tune.x, split.tune.y, classes, self.inversion,
                               device=device, progress=progress)
        asr_p = splice(reference, "asr_pivot", classes, trigger_success(model, trig, xh, yh),
                       num_classes)
        asr_t = splice(reference, "asr_tuned", classes, trigger_success(repaired, trig, xh, yh),
                       num_classes)
        l1 = splice(reference, "trigger_l1", classes, trig.mask_l1(), num_classes)
        per_score, model_score = cti_scores(asr_p, asr_t, l1, self.min_gap)
        per = [ClassScore(c, float(per_score[c]), float(asr_p[c]), float(asr_t[c]),
                          float(l1[c]), float(per_score[c])) for c in range(num_classes)]
        flagged = [c for c in range(num_classes) if per_score[c] >= self.threshold]
        return DetectionResult(self.name, model_score, per, flagged, trig,
                               extra={"min_gap": self.min_gap, "gap": (asr_p - asr_t).tolist(),
                                      "scanned_classes": classes})
