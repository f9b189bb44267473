"""Waivers: an accepted backdoor finding for one model file (by SHA-256), with a reason and an
expiry date, and the stable rule ids they name.

Apart from the policy because a waiver belongs to the gate's decision, not to the scan: it
changes what the release process does about a verdict, never the verdict itself.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from scanner.errors import InputError

RULES = {
    # stable ids used by SARIF, JUnit and waivers
    "BDS001": "backdoor-suspected",
    "BDS002": "scan-inconclusive",
    "BDS003": "canary-not-detected",
}
WAIVABLE = ("BDS001",)


@dataclass(frozen=True)
class Waiver:
    """An accepted finding: this model (by sha256), this rule, why, and until when."""

    sha256: str
    rule: str  # rule id, e.g. BDS001
    reason: str
    expires: _dt.date

    def status(self, sha256: str, rule: str, today: _dt.date) -> str:
        if self.sha256 != sha256.lower() or self.rule != rule:
            return "not-applicable"
        return "expired" if today > self.expires else "applied"

    def to_dict(self) -> dict:
        return {"sha256": self.sha256, "rule": self.rule, "rule_name": RULES[self.rule],
                "reason": self.reason, "expires": self.expires.isoformat()}



def _rule_id(v, src: str, i: int) -> str:
    names = {n: i for i, n in RULES.items()}
    rid = v if v in RULES else names.get(v)
    if rid is None:
        raise InputError(f"{src}: waivers[{i}].rule {v!r} is not a rule",
                         hint="rules: " + ", ".join(f"{k} ({n})" for k, n in RULES.items()))
    if rid not in WAIVABLE:
        raise InputError(f"{src}: waivers[{i}].rule {v!r} cannot be waived: a scan that could not "
                         "judge the model is never turned into a pass")
    return rid


def parse_waivers(data, src: str) -> list[Waiver]:
    if not isinstance(data, list):
        raise InputError(f"{src}: waivers must be an array of tables ([[waivers]])")
    out = []
    for i, w in enumerate(data):
        if not isinstance(w, dict):
            raise InputError(f"{src}: waivers[{i}] must be a table")
        unknown = set(w) - {"sha256", "rule", "reason", "expires"}
        if unknown:
            raise InputError(f"{src}: unknown key 'waivers[{i}].{sorted(unknown)[0]}'",
                             hint="known: sha256, rule, reason, expires")
        for k in ("sha256", "rule", "reason", "expires"):
            if k not in w:
                raise InputError(f"{src}: waivers[{i}] needs {k!r}")
        sha = w["sha256"]
        if not (isinstance(sha, str) and len(sha) == 64
                and all(c in "0123456789abcdef" for c in sha.lower())):
            raise InputError(f"{src}: waivers[{i}].sha256 must be 64 hex digits, got {sha!r}")
        if not isinstance(w["reason"], str) or not w["reason"].strip():
            raise InputError(f"{src}: waivers[{i}].reason must be a non-empty string")
        exp = w["expires"]
        if isinstance(exp, str):
            try:
                exp = _dt.date.fromisoformat(exp)
            except ValueError:
                exp = None
        if isinstance(exp, _dt.datetime):
            exp = exp.date()
        if not isinstance(exp, _dt.date):
            raise InputError(f"{src}: waivers[{i}].expires must be a date (YYYY-MM-DD), "
                             f"got {w['expires']!r}")
        out.append(Waiver(sha.lower(), _rule_id(w["rule"], src, i), w["reason"].strip(), exp))
    return out



def evaluate_waivers(waivers: list[Waiver], sha256: str, rule: str,
                     today: _dt.date | None = None) -> list[dict]:
    """Every waiver that names this model and rule, with its status (applied or expired)."""
    today = today or _dt.date.today()
    out = []
    for w in waivers:
        st = w.status(sha256, rule, today)
        if st != "not-applicable":
            out.append({**w.to_dict(), "status": st})
    return out
