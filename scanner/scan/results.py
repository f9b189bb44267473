"""What the jobs return. Reports render these; they never compute.

Every result carries the resolved request (serialised as ``settings``) and a ``run`` block of
facts the job found out while running (memory layout, whether the canary ran beside the scan).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from scanner import __version__
from scanner.scan.request import ScanRequest

VERDICT_PASS = "pass"
VERDICT_BACKDOOR = "backdoor"
VERDICT_INCONCLUSIVE = "inconclusive"


@dataclass
class InspectResult:
    """What ``scan inspect`` found out about a model (and, optionally, its trusted data)."""

    model: str
    format: str
    sha256: str
    num_classes: int
    spec: dict
    op_histogram: dict[str, int]
    unsupported_ops: list[str]
    import_notes: list[str]
    parity: dict | None
    has_batchnorm: bool
    onnx_opset: int | None
    arch: str | None
    class_names: list[str] | None
    trusted: dict | None = None
    tool_version: str = __version__
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ScanResult:
    """The verdict and the evidence behind it."""

    verdict: str
    reasons: list[str]
    model: dict
    trusted: dict
    request: ScanRequest
    detection: dict | None = None
    repair: dict | None = None
    canary: dict | None = None
    timings: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    tool_version: str = __version__
    artifacts: dict = field(default_factory=dict)  # not serialised: tensors for reports

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "reasons": list(self.reasons), "model": self.model,
                "trusted": self.trusted, "settings": self.request.to_dict(), "run": self.run,
                "detection": self.detection, "repair": self.repair, "canary": self.canary,
                "timings": self.timings, "tool_version": self.tool_version}


@dataclass
class RepairJobResult:
    """What ``scan repair`` did: the repair, the verified export, and a re-scan of the result."""

    status: str  # "repaired" | "not-repaired" | "inconclusive"
    reasons: list[str]
    model: dict
    trusted: dict
    request: ScanRequest
    defense: str
    repair: dict | None = None
    output: dict | None = None  # path, sha256, verified
    rescan: dict | None = None  # the detector's view of the repaired model
    timings: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    tool_version: str = __version__

    def to_dict(self) -> dict:
        return {"status": self.status, "reasons": list(self.reasons), "model": self.model,
                "trusted": self.trusted, "settings": self.request.to_dict(), "run": self.run,
                "defense": self.defense, "repair": self.repair, "output": self.output,
                "rescan": self.rescan, "timings": self.timings,
                "tool_version": self.tool_version}


def repair_summary(rep) -> dict:
    """A RepairResult as the report's ``repair`` block."""
    return {"pivot_cda": rep.pivot_cda, "best_cda": rep.best_cda, "best_step": rep.best_step,
            "cda_drop_se": None if math.isnan(rep.cda_drop_se) else rep.cda_drop_se,
            "moved": rep.moved, "param_distance": rep.param_distance, "notes": rep.notes,
            "trajectory": [{"step": c.step, "cda": c.cda, **c.extra} for c in rep.trajectory],
            "wall_s": rep.wall_s}


def detection_summary(det, threshold: float) -> dict:
    """A DetectionResult as the report's ``detection`` block, with the threshold it was judged by."""
    return {"method": det.method, "model_score": det.model_score, "flagged": det.flagged,
            "top_class": det.top_class, "wall_s": det.wall_s, "notes": det.notes,
            "per_class": [asdict(s) for s in det.per_class], "threshold": threshold}
