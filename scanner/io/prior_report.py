"""Read a previous scan's report.json back, so that a repair can reuse its detection.

Why: in a pipeline the scan runs first and fails the gate; the repair that follows would otherwise
invert triggers again (half a minute on a CPU) only to find the class the scan already named. The
report is checked against the model by SHA-256: a detection of another file (an older export, a
different model) must never steer a repair.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from scanner.detectors.result import ClassScore, DetectionResult
from scanner.errors import InputError


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else math.nan


def load_prior_detection(path: str | Path, model_sha256: str,
                         num_classes: int | None = None) -> DetectionResult:
    """The detection recorded in the report at ``path``, which must describe ``model_sha256``
    (and, when given, name only classes below ``num_classes``).

    Only what a repair can use comes back: the method, the scores per class and the flagged
    classes. Reversed triggers are not restored (the report holds pictures, not tensors).
    """
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"cannot read the report {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path} is not a JSON report: {e}",
                         hint="pass the report.json a scan wrote (--report-dir) or its --json "
                              "output") from None
    if not isinstance(report, dict) or "model" not in report or "detection" not in report:
        raise InputError(f"{path} is not a scan report (no 'model' and 'detection' keys)")
    sha = str((report.get("model") or {}).get("sha256") or "")
    if sha != model_sha256:
        raise InputError(f"the report {path} describes another model file (sha256 "
                         f"{sha[:12] or 'missing'}…, this model {model_sha256[:12]}…)",
                         hint="scan this exact file first, or drop --from-report")
    det = report.get("detection")
    if not isinstance(det, dict) or not isinstance(det.get("per_class"), list):
        raise InputError(f"the report {path} has no detection (the scan stopped before it "
                         f"detected: verdict {report.get('verdict')!r})",
                         hint="drop --from-report; the repair will invert triggers itself")
    per_class = []
    for row in det["per_class"]:
        bad_cls = not isinstance(row, dict) or not isinstance(row.get("cls"), int) \
            or row["cls"] < 0 or (num_classes is not None and row["cls"] >= num_classes)
        if bad_cls:
            raise InputError(f"the report {path} has a malformed per-class entry: {row!r}")
        per_class.append(ClassScore(cls=row["cls"], score=_number(row.get("score")),
                                    asr_pivot=_number(row.get("asr_pivot"))))
    finite = [s for s in per_class if math.isfinite(s.score)]
    if not finite:
        raise InputError(f"the report {path} has no finite class score to take a suspect from",
                         hint="drop --from-report; the repair will invert triggers itself")
    method = str(det.get("method") or "unknown")
    # NaN scores (a class the detector could not score) must never become the top class
    per_class = [s if math.isfinite(s.score) else ClassScore(s.cls, -math.inf, s.asr_pivot)
                 for s in per_class]
    return DetectionResult(method=method, model_score=_number(det.get("model_score")),
                           per_class=per_class,
                           flagged=[int(c) for c in det.get("flagged") or []],
                           wall_s=_number(det.get("wall_s")),
                           extra={"source": f"the scan report {path.name}"})
