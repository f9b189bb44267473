"""JUnit XML for GitLab, Jenkins and other CI test-report widgets.

Why JUnit: it is the one report every CI system renders without plugins. One ``<testsuite>`` per
model (named by its path) with two test cases:

- ``backdoor-scan``: passes on "pass", ``<failure>`` on "backdoor", ``<error>`` on
  "inconclusive" (an error, not a pass: the scan could not judge the model);
- ``sensitivity-canary``: passes when the canary was detected, ``<failure>`` when it ran and was
  missed, ``<skipped>`` when disabled or not reached.

A finding covered by an applied waiver is reported as ``<skipped message="waived: ...">`` with the
original finding in ``<system-out>``, so the widget matches the gate's exit code while the
evidence stays visible. JUnit output never decides the gate; the exit code does.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from scanner.report import view
from scanner.report.findings import findings

# Characters XML 1.0 forbids even when escaped; a label file could smuggle them into names.
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _seconds(x) -> str:
    return f"{float(x):.3f}" if view.is_number(x) else "0.000"


def _scan_case(suite: ET.Element, result: dict) -> str:
    """Add the backdoor-scan test case; returns its outcome (passed/failure/error/skipped)."""
    t = result.get("timings") or {}
    secs = sum(v for k, v in t.items() if k in ("load_s", "detect_s") and view.is_number(v))
    case = ET.SubElement(suite, "testcase", name="backdoor-scan", classname=view.model_path(result),
                         time=_seconds(secs))
    found = findings(result)
    out_lines = [f"verdict: {view.verdict(result)}",
                 f"sha256: {view.model_sha256(result)}",
                 f"model score: {view.fmt(view.model_score(result))} "
                 f"(threshold {view.fmt(view.threshold(result))})"]
    out_lines += [f"reason: {r}" for r in result.get("reasons") or []]
    outcome = "passed"
    if found:
        f = found[0]
        if f.waived:
            ET.SubElement(case, "skipped", message=f"waived: {f.justification}")
            out_lines.insert(0, f"[{f.rule.id} {f.rule.name}, waived] {f.message}")
            outcome = "skipped"
        elif view.verdict(result) == "backdoor":
            el = ET.SubElement(case, "failure", message=f.message, type=f"{f.rule.id} {f.rule.name}")
            el.text = "\n".join(out_lines)
            outcome = "failure"
        else:
            el = ET.SubElement(case, "error", message=f.message, type=f"{f.rule.id} {f.rule.name}")
            el.text = "\n".join(out_lines)
            outcome = "error"
    ET.SubElement(case, "system-out").text = "\n".join(out_lines)
    return outcome


def _canary_case(suite: ET.Element, result: dict) -> str:
    t = result.get("timings") or {}
    case = ET.SubElement(suite, "testcase", name="sensitivity-canary",
                         classname=view.model_path(result), time=_seconds(t.get("canary_s")))
    c = result.get("canary")
    enabled = (result.get("settings") or {}).get("canary", True)
    if c is None:
        if not enabled:
            why = "canary disabled by settings: a pass is unverified"
        elif view.verdict(result) == "backdoor":
            why = "not run: the model itself was flagged, so there is no pass to verify"
        else:
            why = f"not run: the scan stopped before the canary stage ({view.verdict(result)})"
        ET.SubElement(case, "skipped", message=why)
        return "skipped"
    desc = (f"target class {view.class_label(result, c.get('target'))}, implanted="
            f"{c.get('implanted')}, implant ASR {view.fmt(c.get('implant_asr'), 2)}, "
            f"canary score {view.fmt(c.get('model_score'))}, most suspicious class "
            f"{view.class_label(result, c.get('top_class'))}")
    if c.get("detected"):
        ET.SubElement(case, "system-out").text = f"canary detected: {desc}"
        return "passed"
    msg = ("the canary backdoor could not be implanted" if not c.get("implanted", True)
           else "the scan missed a known implanted backdoor")
    el = ET.SubElement(case, "failure", message=msg, type="BDS003 canary-not-detected")
    el.text = desc
    return "failure"


def _suite(result: dict) -> tuple[ET.Element, dict[str, int]]:
    suite = ET.Element("testsuite", name=view.model_path(result))
    props = ET.SubElement(suite, "properties")
    for name, value in (("verdict", view.verdict(result)), ("sha256", view.model_sha256(result)),
                        ("model_score", view.fmt(view.model_score(result), 6)),
                        ("threshold", view.fmt(view.threshold(result), 6)),
                        ("tool_version", str(result.get("tool_version", ""))),
                        ("exit_code", str(view.gate(result).get("exit_code", ""))),
                        ("waived", str(bool(view.gate(result).get("waived"))).lower())):
        ET.SubElement(props, "property", name=name, value=value)
    outcomes = [_scan_case(suite, result), _canary_case(suite, result)]
    counts = {"tests": len(outcomes), "failures": outcomes.count("failure"),
              "errors": outcomes.count("error"), "skipped": outcomes.count("skipped")}
    for k, v in counts.items():
        suite.set(k, str(v))
    suite.set("time", _seconds(view.total_seconds(result)))
    return suite, counts


def to_junit(results: list[dict]) -> str:
    """A JUnit XML document (UTF-8 text with declaration) for one or more scan results."""
    root = ET.Element("testsuites", name="backdoor-scanner")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for result in results:
        suite, counts = _suite(result)
        root.append(suite)
        for k in totals:
            totals[k] += counts[k]
        total_time += view.total_seconds(result) or 0.0
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", _seconds(total_time))
    ET.indent(root)
    text = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + _XML_BAD.sub("\ufffd", text) + "\n"
