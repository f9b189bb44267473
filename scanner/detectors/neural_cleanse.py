"""Neural Cleanse (Wang et al. 2019), original parametrisation, as the baseline detector.

tanh mask + pattern, CE + cost * |m|_1 with the adaptive cost schedule (init 1e-3, x2 up,
/2^1.5 down, patience 5), Adam lr 0.1 betas (0.5, 0.9); anomaly index = MAD index of the mask
L1 norms, flagged when a class lies more than 2 below the median (``statistic="mad"``, the
baseline as published).

``statistic="log_mad"`` is the scanner's variant: the same index on log L1 norms. Why: mask norms
spread multiplicatively (clean classes range over ~3x), so on a linear scale a real trigger 16x
smaller than the median still scored below 2 in our probe; on a log scale it stands out. Its
threshold is the textbook modified-z-score outlier rule, 3.5 (Iglewicz & Hoaglin), not a value
fitted to our models.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from scanner.detectors.base import Detector
from scanner.detectors.inversion import (InversionConfig, ProgressFn, TriggerSet, ce_rows,
                                         invert_triggers, trigger_success)
from scanner.detectors.registry import DETECTORS
from scanner.detectors.result import ClassScore, DetectionResult, splice
from scanner.io.trusted_split import TrustedSplit
from scanner.ops.metrics import anomaly_index

NC_THRESHOLD = 2.0
LOG_MAD_THRESHOLD = 3.5


def mask_outlier_index(l1: np.ndarray, statistic: str) -> np.ndarray:
    """Low-side anomaly index of mask norms (positive = smaller than the median)."""
    v = np.log(np.maximum(l1, 1e-6)) if statistic == "log_mad" else l1
    return -anomaly_index(v)


def nc_invert(model: torch.nn.Module, split: TrustedSplit, classes: list[int],
              inversion: InversionConfig, *, device: torch.device,
              progress: ProgressFn | None = None) -> tuple[TriggerSet, list[float], list[float]]:
    """Neural Cleanse's inversion for ``classes`` on a frozen model: (triggers, held-out ASR,
    mask L1) per class."""
    def row_loss(xk: Tensor, c_rows: Tensor, y_rows: Tensor):
        logits = model(xk)
        return ce_rows(logits, c_rows), logits.argmax(-1) == c_rows

    trig = invert_triggers(row_loss, split.tune.x, split.tune.y, classes, inversion,
                           device=device, progress=progress)
    asr = trigger_success(model, trig, split.held.x, split.held.y)
    return trig, asr, trig.mask_l1()


@DETECTORS.register("mask", summary="reversed mask+pattern triggers; low-side MAD outlier test "
                                    "on the log mask norms (default)")
class MaskDetector(Detector):
    """Neural Cleanse's inversion, scored by the MAD index of the log mask norms."""

    name = "mask"
    statistic = "log_mad"
    default_threshold = LOG_MAD_THRESHOLD

    @staticmethod
    def default_inversion() -> InversionConfig:
        return InversionConfig(form="mask", steps=400, batch_size=32, lr=0.1)

    def forward(self, model, split, num_classes, classes, *, repaired, device, progress,
                reference) -> DetectionResult:
        trig, asr_s, l1_s = nc_invert(model, split, classes, self.inversion, device=device,
                                      progress=progress)
        l1 = splice(reference, "trigger_l1", classes, l1_s, num_classes)
        asr = splice(reference, "asr_pivot", classes, asr_s, num_classes)
        idx = mask_outlier_index(l1, self.statistic)
        per = [ClassScore(c, float(idx[c]), float(asr[c]), None, float(l1[c]), float(idx[c]))
               for c in range(num_classes)]
        flagged = [c for c in range(num_classes) if idx[c] > self.threshold]
        finite = idx[np.isfinite(idx)]
        return DetectionResult(self.name, float(finite.max() if finite.size else 0.0), per,
                               flagged, trig,
                               extra={"statistic": self.statistic, "scanned_classes": classes,
                                      "index_mad": mask_outlier_index(l1, "mad").tolist(),
                                      "index_log_mad": mask_outlier_index(l1, "log_mad").tolist()})


@DETECTORS.register("nc", summary="Neural Cleanse as published (linear MAD anomaly index), "
                                  "the baseline")
class NCDetector(MaskDetector):
    """Neural Cleanse as published: the MAD index of the mask norms themselves, flagged at 2."""

    name = "nc"
    statistic = "mad"
    default_threshold = NC_THRESHOLD
