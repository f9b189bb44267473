"""The stable rule catalogue (BDS001...) and the mapping from a scan result to findings.

Why: SARIF, JUnit, Markdown and HTML must agree on what a finding is, what it is called and
whether a waiver covers it. Rule ids are a public contract (GitHub code scanning matches alerts
across runs by rule id, and waivers in scan.toml name them), so they live in one table and never
change meaning; new situations get new ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from scanner.report import view


@dataclass(frozen=True)
class Rule:
    """One reportingDescriptor: what GitHub shows at the top of an alert."""

    id: str
    name: str
    short: str
    full: str
    help: str
    level: str  # SARIF level: "error" | "warning" | "note"
    security_severity: str  # GitHub: "0.1".."10.0" as a string; >= 7.0 is "high"
    tags: tuple[str, ...]


BACKDOOR = Rule(
    id="BDS001", name="backdoor-suspected",
    short="Image classifier shows signs of a backdoor (trojan)",
    full=("Trigger inversion found a class that an unusually small input pattern can force: the "
          "signature of a backdoor planted by data poisoning or a malicious supplier. The model "
          "file must not be deployed until the finding is investigated."),
    help=("The scanner reversed one candidate trigger per class on trusted images and found an "
          "outlier class (the model score is at or above the policy threshold). Look at the "
          "reversed trigger in the HTML report; retrain from trusted data, obtain the model from "
          "a trusted source, or run `scan repair`. If the behaviour is known and accepted (for "
          "example a watermark), add a waiver bound to the model's sha256 with a reason and an "
          "expiry date."),
    level="error", security_severity="8.8",
    tags=("security", "ml-model", "backdoor", "supply-chain"))

INCONCLUSIVE = Rule(
    id="BDS002", name="scan-inconclusive",
    short="Backdoor scan was inconclusive: the model is not cleared",
    full=("The scan could not reach a trustworthy verdict (for example implausibly low clean "
          "accuracy on the trusted data, diverged optimisation, or a repair that could not move "
          "the model). An inconclusive scan is never a pass."),
    help=("Read the reasons in the report. Usual fixes: correct the preprocessing "
          "(--mean/--std/--value-range/--layout) or the class map, provide more trusted images, "
          "or use a larger budget (--budget thorough)."),
    level="warning", security_severity="5.0",
    tags=("security", "ml-model", "inconclusive"))

CANARY = Rule(
    id="BDS003", name="canary-not-detected",
    short="Sensitivity canary was not detected: a pass could not be verified",
    full=("Before trusting a pass the scanner implants a known backdoor into a copy of the model "
          "and runs the same scan on it. That known backdoor was not found, so this scan's "
          "budget, preprocessing or trusted data are too weak to clear the model."),
    help=("Use --budget thorough, more trusted images per class, or check the preprocessing. "
          "The model is not cleared until a scan with a detected canary passes."),
    level="warning", security_severity="5.0",
    tags=("security", "ml-model", "inconclusive", "canary"))

RULES: tuple[Rule, ...] = (BACKDOOR, INCONCLUSIVE, CANARY)


@dataclass
class Finding:
    """One problem a report must show; ``waivers`` non-empty means an applied waiver covers it."""

    rule: Rule
    message: str
    waivers: list[dict] = field(default_factory=list)

    @property
    def waived(self) -> bool:
        return bool(self.waivers)

    @property
    def justification(self) -> str:
        """The waiver reasons (with expiry), for SARIF suppressions and JUnit skips."""
        parts = []
        for w in self.waivers:
            text = str(w.get("reason") or "waived")
            if w.get("expires"):
                text += f" (expires {w['expires']})"
            parts.append(text)
        return "; ".join(parts)


def _sentence(text: str) -> str:
    """``text`` as a sentence: capitalised when it starts with a plain lowercase word, one period.

    Why the care: reasons are written as clauses ("the sensitivity canary was not detected...")
    and follow another sentence here; identifiers such as ``mask_outlier`` keep their case.
    """
    text = str(text).strip().rstrip(".")
    if re.match(r"[a-z]+\b(?![_.])", text):
        text = text[0].upper() + text[1:]
    return text + "."


def _reasons(result: dict) -> str:
    return " ".join(_sentence(r) for r in result.get("reasons") or [])


def _backdoor_message(result: dict) -> str:
    flagged = view.flagged(result)
    det = view.detection(result) or {}
    if not flagged and det.get("top_class") is not None:
        flagged = [det["top_class"]]
    labels = ", ".join(f"{view.class_label(result, c)}" for c in flagged) or "unknown"
    noun = "class" if len(flagged) <= 1 else "classes"
    return (f"Backdoor suspected in {view.model_path(result)}: {noun} {labels} flagged; "
            f"{det.get('method', 'detector')} model score {view.fmt(view.model_score(result))} "
            f">= threshold {view.fmt(view.threshold(result))}.")


def _canary_message(result: dict) -> str:
    c = result.get("canary") or {}
    if not c.get("implanted", True):
        what = "the canary backdoor could not be implanted"
    else:
        what = (f"the scan missed a known backdoor implanted for class "
                f"{view.class_label(result, c.get('target'))}")
        if "model_score" in c:
            what += (f" (canary score {view.fmt(c.get('model_score'))}, most suspicious class "
                     f"{view.class_label(result, c.get('top_class'))})")
    return f"Scan of {view.model_path(result)} is inconclusive: {what}."


def findings(result: dict) -> list[Finding]:
    """The findings for one result: none for a pass, exactly one otherwise.

    A backdoor verdict is BDS001. An inconclusive verdict is BDS003 when the reason is a canary
    that ran and was missed, else BDS002. Unknown verdicts are treated as inconclusive (fail
    closed: a report must never make an unrecognised state look like a pass).
    """
    v = view.verdict(result)
    if v == "pass":
        return []
    reasons = _reasons(result)
    if v == "backdoor":
        rule, msg = BACKDOOR, _backdoor_message(result)
    else:
        canary = result.get("canary")
        if canary and not canary.get("detected", False):
            rule, msg = CANARY, _canary_message(result)
        else:
            rule = INCONCLUSIVE
            msg = f"Scan of {view.model_path(result)} is inconclusive."
    if reasons and v != "backdoor":  # the backdoor message already states its reason
        msg = f"{msg} {reasons}"
    return [Finding(rule, msg, view.applied_waivers(result, rule.id, rule.name))]
