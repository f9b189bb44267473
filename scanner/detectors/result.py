"""What every detector returns (scanning never formats; reports read this)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
