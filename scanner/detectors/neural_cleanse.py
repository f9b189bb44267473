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

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from scanner.detectors.inversion import (InversionConfig, ProgressFn, TriggerSet, ce_rows,
                                         frozen, invert_triggers, trigger_success)
from scanner.detectors.result import ClassScore, DetectionResult, scan_classes, splice
from scanner.ops.metrics import anomaly_index

NC_THRESHOLD = 2.0
LOG_MAD_THRESHOLD = 3.5


@dataclass
class NCConfig:
    inversion: InversionConfig = field(default_factory=lambda: InversionConfig(
        form="mask", steps=400, batch_size=32, lr=0.1))
    threshold: float = NC_THRESHOLD
    statistic: str = "mad"  # "mad" (original) | "log_mad"


def mask_outlier_index(l1: np.ndarray, statistic: str) -> np.ndarray:
    """Low-side anomaly index of mask norms (positive = smaller than the median)."""
    v = np.log(np.maximum(l1, 1e-6)) if statistic == "log_mad" else l1
    return -anomaly_index(v)


def nc_invert(model: torch.nn.Module, x_tune: Tensor, y_tune: Tensor, x_held: Tensor,
              y_held: Tensor, classes: list[int], inversion: InversionConfig, *,
              device: torch.device, progress: ProgressFn | None = None
              ) -> tuple[TriggerSet, list[float], list[float]]:
    """Neural Cleanse's inversion for ``classes``: (triggers, held-out ASR, mask L1) per class."""
    model = model.to(device)

    def row_loss(xk: Tensor, c_rows: Tensor, y_rows: Tensor):
        logits = model(xk)
        return ce_rows(logits, c_rows), logits.argmax(-1) == c_rows

    with frozen(model):
        trig = invert_triggers(row_loss, x_tune, y_tune, classes, inversion, device=device,
                               progress=progress)
        asr = trigger_success(model, trig, x_held, y_held)
    return trig, asr, trig.mask_l1()


def nc_detect(model: torch.nn.Module, x_tune: Tensor, y_tune: Tensor, x_held: Tensor,
              y_held: Tensor, num_classes: int, cfg: NCConfig, *,
              device: torch.device | None = None,
              progress: ProgressFn | None = None, classes: list[int] | None = None,
              reference: DetectionResult | None = None) -> DetectionResult:
    """Invert every class (or ``classes``, spliced into ``reference``) and score mask norms."""
    t0 = time.perf_counter()
    device = device or next(model.parameters()).device
    classes = scan_classes(num_classes, classes, reference)
    trig, asr_s, l1_s = nc_invert(model, x_tune, y_tune, x_held, y_held, classes, cfg.inversion,
                                  device=device, progress=progress)
    l1 = splice(reference, "trigger_l1", classes, l1_s, num_classes)
    asr = splice(reference, "asr_pivot", classes, asr_s, num_classes)
    idx = mask_outlier_index(l1, cfg.statistic)
    per = [ClassScore(c, float(idx[c]), float(asr[c]), None, float(l1[c]), float(idx[c]))
           for c in range(num_classes)]
    flagged = [c for c in range(num_classes) if idx[c] > cfg.threshold]
    finite = idx[np.isfinite(idx)]
    name = "nc" if cfg.statistic == "mad" else "mask"  # the registry's names (scanner.detectors)
    return DetectionResult(name, float(finite.max() if finite.size else 0.0), per,
                           flagged, trig, time.perf_counter() - t0,
                           extra={"statistic": cfg.statistic, "scanned_classes": classes,
                                  "index_mad": mask_outlier_index(l1, "mad").tolist(),
                                  "index_log_mad": mask_outlier_index(l1, "log_mad").tolist()})
