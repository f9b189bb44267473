"""Test CDA and real-trigger ASR of a model: the measurement every game row records.

Why its own object: a repair is measured at every checkpoint (through the defenses' ``monitor``
hook), so the triggered test images are made once and reused; the arithmetic is the product's
(``scanner.classifier.predict``, ``scanner.ops.metrics``).
"""

from __future__ import annotations

from typing import Callable

import torch

from scanner.errors import InputError


class Meter:
    """``meter(model)`` -> ``{"test_cda", "asr"}`` (``asr`` only when a trigger is given)."""

    def __init__(self, x_test: torch.Tensor, y_test: torch.Tensor, attack=None,
                 trigger: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 target: int | None = None) -> None:
        self.x, self.y = x_test, y_test
        self.x_trig = None
        if attack is not None:
            trigger = attack.apply
            target = attack.config.target
        if trigger is not None:
            keep = y_test != target
            if not bool(keep.any()):
                raise InputError("every test image is of the target class: ASR is undefined")
            self.x_trig = torch.cat([trigger(b) for b in x_test[keep].split(512)])
            self.y_trig = y_test[keep]
            self.target = int(target)

    def __call__(self, model: torch.nn.Module) -> dict:
        from scanner.classifier import predict
        from scanner.ops.metrics import accuracy, attack_success_rate

        out = {"test_cda": accuracy(predict(model, self.x), self.y)}
        if self.x_trig is not None:
            out["asr"] = attack_success_rate(predict(model, self.x_trig), self.y_trig, self.target)
        return out
