"""Detectors by name. The names here are the names everywhere: the policy's ``gate.method``,
``--method``, and the ``detection.method`` of every report.

Each entry is a :class:`scanner.detectors.base.Detector` subclass, registered by decorator in
its own module; build one with the budget's inversion settings and the policy's threshold:

    detector = DETECTORS.get("mask")(inversion, threshold)
    result = detector(model, split, num_classes)
"""

from __future__ import annotations

import importlib

from scanner.registry import Registry

_BUILTIN = ("neural_cleanse", "cti", "ratio")


def _load_builtin() -> None:
    for module in _BUILTIN:
        importlib.import_module(f"scanner.detectors.{module}")


DETECTORS: Registry = Registry("detector", loader=_load_builtin)
