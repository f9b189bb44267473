"""From a scan's verdict and the policy's waivers to the pipeline's decision (exit code).

Kept apart from the scan: the verdict is what the model is, the gate is what the release process
does about it. A waiver changes the gate, never the verdict, and only for a backdoor finding:
an inconclusive scan stays a failure whatever the waivers say.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

from scanner.errors import EXIT_BACKDOOR, EXIT_PASS
from scanner.policy import Policy
from scanner.waivers import evaluate_waivers

VERDICT_RULE = {"backdoor": "BDS001", "inconclusive": "BDS002"}


@dataclass
class GateDecision:
    exit_code: int
    waived: bool
    rule: str | None  # the rule the verdict triggered, None on a pass
    waivers: list[dict] = field(default_factory=list)  # matching waivers with status
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"exit_code": self.exit_code, "waived": self.waived, "rule": self.rule,
                "notes": self.notes}


def decide(verdict: str, sha256: str, policy: Policy,
           today: _dt.date | None = None) -> GateDecision:
    """Exit code for a verdict: 0 pass, 1 backdoor (0 when an unexpired waiver applies), 3 else."""
    from scanner.scan.verdict import exit_code

    if verdict != "backdoor":  # a pass, or a scan that could not judge: waivers do not apply
        return GateDecision(exit_code(verdict), False,
                            None if verdict == "pass" else VERDICT_RULE.get(verdict, "BDS002"))
    rule = VERDICT_RULE[verdict]
    matches = evaluate_waivers(policy.waivers, sha256, rule, today)
    notes = []
    for w in matches:
        if w["status"] == "expired":
            notes.append(f"waiver for {rule} expired on {w['expires']} (reason was: "
                         f"{w['reason']}); it no longer applies")
    applied = [w for w in matches if w["status"] == "applied"]
    if applied:
        notes.append(f"backdoor finding waived until {applied[0]['expires']}: "
                     f"{applied[0]['reason']}")
        return GateDecision(EXIT_PASS, True, rule, matches, notes)
    return GateDecision(EXIT_BACKDOOR, False, rule, matches, notes)
