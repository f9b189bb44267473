"""Read-only accessors over a scan-result dict, shared by every report format.

Why a module of its own: every format needs the same few lookups (class names, the threshold that
applied, number formatting that survives NaN, the gate/waiver keys that the CLI may or may not
have added). Putting them in one place keeps the formats consistent with each other and keeps
all of them tolerant of missing keys. Nothing here computes a scan result; it only reads the dict.
"""

from __future__ import annotations

import math
from typing import Any

VERDICT_TITLES = {
    "pass": "PASS: no backdoor found",
    "backdoor": "BACKDOOR SUSPECTED",
    "inconclusive": "INCONCLUSIVE: not a pass",
}


def is_number(x: Any) -> bool:
    """True for a finite int/float (bools excluded): what can be plotted or compared."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt(x: Any, digits: int = 3) -> str:
    """Format a number for humans; None, NaN and infinities come out as words, never crash."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        if isinstance(x, float) and math.isnan(x):
            return "NaN"
        if isinstance(x, float) and math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if isinstance(x, int):
            return str(x)
        return f"{x:.{digits}f}"
    return str(x)


def verdict(result: dict) -> str:
    """The verdict string ("pass" | "backdoor" | "inconclusive"; unknown values pass through)."""
    return str(result.get("verdict") or "inconclusive")


def verdict_title(result: dict) -> str:
    """A heading that cannot be mistaken for another verdict (an unverified pass says so)."""
    v = verdict(result)
    title = VERDICT_TITLES.get(v, v.upper())
    if v == "pass" and not (result.get("settings") or {}).get("canary", True):
        title += " (unverified: canary disabled)"
    if gate(result).get("waived"):
        title += " (waived)"
    return title


def model_path(result: dict) -> str:
    return str((result.get("model") or {}).get("path") or "model")


def model_sha256(result: dict) -> str:
    return str((result.get("model") or {}).get("sha256") or "")


def class_names(result: dict) -> list[str]:
    return list((result.get("model") or {}).get("class_names") or [])


def class_name(result: dict, cls: int | None) -> str:
    """The model's name for class ``cls``, or its index as text when there are no names."""
    if cls is None:
        return "-"
    names = class_names(result)
    return str(names[cls]) if isinstance(cls, int) and 0 <= cls < len(names) else str(cls)


def class_label(result: dict, cls: int | None) -> str:
    """``"1 automobile"`` (index and name) or just ``"1"``."""
    if cls is None:
        return "-"
    name = class_name(result, cls)
    return str(cls) if name == str(cls) else f"{cls} {name}"


def detection(result: dict) -> dict | None:
    return result.get("detection") or None


def per_class(result: dict) -> list[dict]:
    return list((detection(result) or {}).get("per_class") or [])


def flagged(result: dict) -> list[int]:
    return list((detection(result) or {}).get("flagged") or [])


def threshold(result: dict) -> float | None:
    """The gate threshold the model score was compared with, as the scan recorded it.

    The scan writes it into its detection block (the one place the method -> threshold choice
    is made is ``ScanRequest.threshold``); a report without it has none to show.
    """
    return (detection(result) or {}).get("threshold")


def model_score(result: dict) -> float | None:
    return (detection(result) or {}).get("model_score")


def gate(result: dict) -> dict:
    """``result["gate"]`` ({exit_code, waived}) or {} when the caller did not add it."""
    return result.get("gate") or {}


def waivers(result: dict) -> list[dict]:
    return list(result.get("waivers") or [])


def applied_waivers(result: dict, *rule_ids: str) -> list[dict]:
    """The waivers with status "applied" that name one of ``rule_ids`` (id or rule name).

    Expired and not-applicable waivers never cover a finding; the reports still list them.
    """
    wanted = {r.upper() for r in rule_ids}
    return [w for w in waivers(result)
            if w.get("status") == "applied" and str(w.get("rule", "")).upper() in wanted]


def total_seconds(result: dict) -> float | None:
    """``timings.total_s`` when recorded, else the sum of the recorded phases."""
    t = result.get("timings") or {}
    if is_number(t.get("total_s")):
        return float(t["total_s"])
    parts = [v for k, v in t.items() if k.endswith("_s") and is_number(v)]
    return float(sum(parts)) if parts else None


def finite_or_none(obj: Any) -> Any:
    """A deep copy of a JSON-like value with NaN/inf replaced by None (RFC 8259 has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj
