"""What every detector returns (scanning never formats; reports read this)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scanner.detectors.inversion import TriggerSet


@dataclass
class ClassScore:
    cls: int
    score: float  # the detector's per-class anomaly score (higher = more suspicious)
    asr_pivot: float  # reversed trigger's success on the suspect model (held-out)
    asr_tuned: float | None = None  # ... on the repaired model (CTI only)
    trigger_l1: float = 0.0
    anomaly_index: float = 0.0  # MAD index of the score across classes (high side)


@dataclass
class DetectionResult:
    method: str
    model_score: float  # compared with the policy threshold
    per_class: list[ClassScore]
    flagged: list[int]  # classes whose score crosses the detector's own rule
    triggers: TriggerSet | None = None
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def top_class(self) -> int:
        return max(self.per_class, key=lambda s: s.score).cls


def scan_classes(num_classes: int, classes: list[int] | None,
                 reference: "DetectionResult | None") -> list[int]:
    """The classes a detector inverts: all, or a subset spliced into ``reference``'s.

    Why a subset exists: the sensitivity canary only needs the implanted class's trigger; the
    other classes' values come from the main scan of the same model (see scanner.scan.canary).
    """
    if classes is None:
        return list(range(num_classes))
    classes = sorted({int(c) for c in classes})
    if not classes or classes[0] < 0 or classes[-1] >= num_classes:
        raise ValueError(f"classes must be a non-empty subset of 0..{num_classes - 1}")
    if len(classes) < num_classes and (reference is None or len(reference.per_class) != num_classes):
        raise ValueError("scanning a subset of classes needs a full reference detection to "
                         "splice into")
    return classes


def splice(reference: "DetectionResult | None", field_name: str, classes: list[int],
           values: list[float], num_classes: int) -> np.ndarray:
    """A full per-class vector: ``values`` at ``classes``, the reference's values elsewhere."""
    if reference is None:
        out = np.full(num_classes, np.nan)
    elif field_name.startswith("extra:"):
        out = np.array(reference.extra[field_name[6:]], dtype=np.float64)
    else:
        out = np.array([getattr(s, field_name) for s in reference.per_class], dtype=np.float64)
    out[classes] = values
    return out
