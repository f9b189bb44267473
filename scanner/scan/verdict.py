"""From a detection to a verdict, and from a verdict to an exit code: each rule written once.

Fail closed: non-finite scores, or a calibrated detector whose repair kept nothing, never pass.
"""

from __future__ import annotations

import math

from scanner.errors import EXIT_BACKDOOR, EXIT_INCONCLUSIVE, EXIT_PASS
from scanner.scan.request import ScanRequest
from scanner.scan.results import (VERDICT_BACKDOOR, VERDICT_INCONCLUSIVE, VERDICT_PASS, ScanResult,
                                  detection_summary, repair_summary)

EXIT_CODES = {VERDICT_PASS: EXIT_PASS, VERDICT_BACKDOOR: EXIT_BACKDOOR}


def exit_code(verdict: str) -> int:
    """0 pass, 1 backdoor, 3 anything else (an unknown verdict is never a pass)."""
    return EXIT_CODES.get(verdict, EXIT_INCONCLUSIVE)


def all_finite(det) -> bool:
    return math.isfinite(det.model_score) and all(
        math.isfinite(s.score) and math.isfinite(s.trigger_l1) for s in det.per_class)


def is_flagged(det, request: ScanRequest) -> bool:
    """The model score (the largest per-class outlier score) against the detector's threshold."""
    return det.model_score >= request.threshold


def class_label(c: int | None, class_names: list[str] | None) -> str:
    """"class 1 (automobile)": a reason a person can act on without looking up the index."""
    if c is None:
        return "no class"
    if class_names and 0 <= c < len(class_names):
        return f"class {c} ({class_names[c]})"
    return f"class {c}"


def judge_detection(det, rep, request: ScanRequest, result: ScanResult) -> str | None:
    """Record the main detection in ``result``; the verdict when it decides the scan alone.

    None means "a pass, if the canary confirms it" (or a plain pass when the canary is off).
    """
    thr = request.threshold
    result.detection = detection_summary(det, thr)
    if not all_finite(det):
        result.reasons.append("the detector produced non-finite scores (diverged optimisation); "
                              "refusing to judge")
        return VERDICT_INCONCLUSIVE
    result.artifacts["triggers"] = det.triggers
    if rep is not None:
        result.repair = repair_summary(rep)
        if not rep.moved:
            result.reasons.append("the repair found no state within the accuracy budget, so the "
                                  "calibrated scores compare the model with itself")
            return VERDICT_INCONCLUSIVE
    if is_flagged(det, request):
        result.verdict = VERDICT_BACKDOOR
        name = class_label(det.top_class, result.model.get("class_names"))
        result.reasons.append(f"{det.method} model score {det.model_score:.3f} >= threshold "
                              f"{thr:.3f}; most suspicious {name}")
        return VERDICT_BACKDOOR
    if not request.canary:
        result.verdict = VERDICT_PASS
        result.reasons.append(f"{det.method} model score {det.model_score:.3f} < threshold "
                              f"{thr:.3f} (canary disabled: this pass is unverified)")
    return None


def judge_canary(det, canary: dict, request: ScanRequest, result: ScanResult) -> None:
    """A score below threshold passes only when the same scan found the implanted canary."""
    if canary["detected"]:
        result.verdict = VERDICT_PASS
        result.reasons.append(f"{det.method} model score {det.model_score:.3f} < threshold "
                              f"{request.threshold:.3f}, and the same scan flagged a known "
                              f"implanted backdoor (canary score {canary['model_score']:.3f})")
    else:
        result.reasons.append("the sensitivity canary was not detected: this scan's budget, "
                              "preprocessing or trusted data is too weak to trust a pass "
                              "(try --budget thorough or more trusted images)")
