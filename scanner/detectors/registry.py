"""Detectors by name. Each entry turns (model, trusted split, budget) into a DetectionResult.

The names here are the names everywhere: the policy's ``gate.method``, ``--method``, and the
``detection.method`` of every report. ``needs_repair``: the detector compares the model with a
Pivotal-Tuning repair of it, which the scan runs first (and fails closed when it keeps nothing).
"""

from __future__ import annotations

from typing import Protocol

from scanner.detectors.inversion import InversionConfig
from scanner.detectors.result import DetectionResult
from scanner.registry import Registry

DETECTORS: Registry = Registry("detector")


class DetectorFn(Protocol):
    def __call__(self, model, split, num_classes: int, inversion: InversionConfig,
                 threshold: float, *, repaired=None, device=None, progress=None,
                 classes: list[int] | None = None,
                 reference: DetectionResult | None = None) -> DetectionResult: ...


def _nc_config(inversion: InversionConfig, threshold: float, statistic: str):
    from scanner.detectors.neural_cleanse import NCConfig

    return NCConfig(inversion, threshold=threshold, statistic=statistic)


def _tensors(split) -> tuple:
    return split.tune.x, split.tune.y, split.held.x, split.held.y


@DETECTORS.register("mask", needs_repair=False, phase="trigger inversion",
                    summary="reversed mask+pattern triggers; low-side MAD outlier test on the log "
                            "mask norms (default)")
def mask(model, split, num_classes, inversion, threshold, *, repaired=None, **kw):
    from scanner.detectors.neural_cleanse import nc_detect

    return nc_detect(model, *_tensors(split), num_classes,
                     _nc_config(inversion, threshold, "log_mad"), **kw)


@DETECTORS.register("nc", needs_repair=False, phase="trigger inversion",
                    summary="Neural Cleanse as published (linear MAD anomaly index), the baseline")
def nc(model, split, num_classes, inversion, threshold, *, repaired=None, **kw):
    from scanner.detectors.neural_cleanse import nc_detect

    return nc_detect(model, *_tensors(split), num_classes,
                     _nc_config(inversion, threshold, "mad"), **kw)


@DETECTORS.register("cti", needs_repair=True, phase="calibrated trigger inversion",
                    summary="Calibrated Trigger Inversion: triggers the repaired copy resists, "
                            "log-MAD outlier test (experimental)")
def cti(model, split, num_classes, inversion, threshold, *, repaired=None, **kw):
    from scanner.detectors.cti import CTIConfig, cti_detect

    return cti_detect(model, repaired, *_tensors(split), num_classes,
                      CTIConfig(inversion=inversion, threshold=threshold), **kw)


@DETECTORS.register("ratio", needs_repair=True, phase="trigger inversion x2",
                    summary="mask-norm ratio between the model and its repair, high-side MAD "
                            "outlier test (experimental)")
def ratio(model, split, num_classes, inversion, threshold, *, repaired=None, **kw):
    from scanner.detectors.ratio import ratio_detect

    return ratio_detect(model, repaired, *_tensors(split), num_classes,
                        _nc_config(inversion, threshold, "log_mad"), **kw)
