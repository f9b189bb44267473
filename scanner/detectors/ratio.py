"""Calibrated mask-norm ratio: how much harder a class's trigger became after the repair.

Neural Cleanse's signal is a class whose reversed trigger is unusually small. On its own it also
fires on clean models whose classes differ naturally (on CIFAR-10, reversed "truck" triggers are
about half the median size on clean models; our default ``mask`` test flagged a clean ResNet-20
that way). Calibration in the spirit of the paper's CTI: reverse the triggers of the suspect model
(pivot) *and* of its Pivotal-Tuning repair, and compare per class. Repair hardens every class a
little (the tuned copy has unlearned small triggers), but a backdoor's target goes from a tiny
trigger to an ordinary one. The statistic is the high-side MAD anomaly index of
log(L1_tuned / L1_pivot) over classes; flagged at 3.5, the usual modified-z-score outlier rule.

First measurements (shipped models, 500 trusted images, standard budget): log ratios 0.0-0.37 on
the non-target classes and 2.65 on the target of the BadNets ResNet-8; 0.14-0.54 on its clean twin
and 0.13-0.76 on a clean ResNet-20 (no outlier). These are development models: see the README.
"""

from __future__ import annotations

import numpy as np

from scanner.detectors.inversion import InversionConfig
from scanner.detectors.neural_cleanse import MaskDetector, nc_invert
from scanner.detectors.registry import DETECTORS
from scanner.detectors.result import ClassScore, DetectionResult, splice
from scanner.ops.metrics import anomaly_index


def log_ratio_index(l1_pivot: np.ndarray, l1_tuned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log(L1_tuned / L1_pivot), its high-side MAD anomaly index) per class."""
    r = np.log(np.maximum(l1_tuned, 1e-6)) - np.log(np.maximum(l1_pivot, 1e-6))
    return r, anomaly_index(r)


@DETECTORS.register("ratio", summary="mask-norm ratio between the model and its repair, "
                                     "high-side MAD outlier test (experimental)")
class RatioDetector(MaskDetector):
    """Reverse triggers on both models (same inversion settings and seed) and compare sizes."""

    name = "ratio"
    needs_repair = True
    phase = "trigger inversion x2"
    default_threshold = 3.5

    @staticmethod
    def default_inversion() -> InversionConfig:
        return MaskDetector.default_inversion()

    def forward(self, model, split, num_classes, classes, *, repaired, device, progress,
                reference) -> DetectionResult:
        def half(offset: int):
            if progress is None:
                return None
            return lambda step, total, info: progress(offset + step, 2 * total, info)

        trig, asr_p, l1_p = nc_invert(model, split, classes, self.inversion, device=device,
                                      progress=half(0))
        _, asr_t, l1_t = nc_invert(repaired, split, classes, self.inversion, device=device,
                                   progress=half(self.inversion.steps))
        l1_p = splice(reference, "trigger_l1", classes, l1_p, num_classes)
        l1_t = splice(reference, "extra:l1_tuned", classes, l1_t, num_classes)
        asr_p = splice(reference, "asr_pivot", classes, asr_p, num_classes)
        asr_t = splice(reference, "asr_tuned", classes, asr_t, num_classes)
        r, idx = log_ratio_index(l1_p, l1_t)
        per = [ClassScore(c, float(idx[c]), float(asr_p[c]), float(asr_t[c]), float(l1_p[c]),
                          float(idx[c])) for c in range(num_classes)]
        finite = idx[np.isfinite(idx)]
        flagged = [c for c in range(num_classes) if idx[c] >= self.threshold]
        return DetectionResult(self.name, float(finite.max() if finite.size else 0.0), per,
                               flagged, trig,
                               extra={"log_ratio": r.tolist(), "l1_tuned": l1_t.tolist(),
                                      "scanned_classes": classes,
                                      "score_rule": "high-side MAD index of "
                                                    "log(L1_tuned/L1_pivot)"})
