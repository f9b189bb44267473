"""The trusted data as every detector and repair uses it: a part to tune on, a part held out.

One object instead of four tensors, so a method's signature says what it needs and a caller
cannot swap the held-out images for the tuning ones by position.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from scanner.io.data import TrustedData


@dataclass(frozen=True)
class TrustedSplit:
    tune: TrustedData
    held: TrustedData

    @classmethod
    def of(cls, x_tune: Tensor, y_tune: Tensor, x_held: Tensor, y_held: Tensor) -> "TrustedSplit":
        """A split from tensors (images float32 NCHW in [0, 1], integer labels)."""
        return cls(TrustedData(x_tune, y_tune), TrustedData(x_held, y_held))
