"""What every detector shares, so each one is only its mathematics (``forward``).

The base owns the rest: the device, eval mode with frozen parameters (gradients flow to the
triggers only), which classes are inverted, and the wall time. As in torchattacks, where the
``Attack`` base owns device, mode and normalisation and each attack is its ``forward``.
"""

from __future__ import annotations

import time
from typing import ClassVar

import torch

from scanner.detectors.inversion import InversionConfig, ProgressFn, frozen
from scanner.detectors.result import DetectionResult, scan_classes
from scanner.io.trusted_split import TrustedSplit


class Detector:
    """A detector configured once (inversion budget, threshold), callable on any model.

    ``needs_repair``: the detector compares the model with a repaired copy of it, which the
    caller passes as ``repaired``. ``phase`` labels its progress lines.
    """

    name: ClassVar[str] = ""
    needs_repair: ClassVar[bool] = False
    phase: ClassVar[str] = "trigger inversion"
    default_threshold: ClassVar[float] = 3.5

    def __init__(self, inversion: InversionConfig | None = None,
                 threshold: float | None = None) -> None:
        self.inversion = inversion if inversion is not None else self.default_inversion()
        self.threshold = self.default_threshold if threshold is None else threshold

    @staticmethod
    def default_inversion() -> InversionConfig:
        return InversionConfig()

    def __call__(self, model: torch.nn.Module, split: TrustedSplit, num_classes: int, *,
                 repaired: torch.nn.Module | None = None, device: torch.device | None = None,
                 progress: ProgressFn | None = None, classes: list[int] | None = None,
                 reference: DetectionResult | None = None) -> DetectionResult:
        """Invert every class (or ``classes``, spliced into ``reference``) and score them."""
        if self.needs_repair and repaired is None:
            raise ValueError(f"detector {self.name!r} needs the repaired copy of the model")
        t0 = time.perf_counter()
        device = device or next(model.parameters()).device
        models = [m.to(device) for m in (model, repaired) if m is not None]
        classes = scan_classes(num_classes, classes, reference)
        with frozen(*models):
            det = self.forward(model, split, num_classes, classes, repaired=repaired,
                               device=device, progress=progress, reference=reference)
        det.wall_s = time.perf_counter() - t0
        return det

    def forward(self, model: torch.nn.Module, split: TrustedSplit, num_classes: int,
                classes: list[int], *, repaired: torch.nn.Module | None,
                device: torch.device, progress: ProgressFn | None,
                reference: DetectionResult | None) -> DetectionResult:
        raise NotImplementedError
