"""SARIF 2.1.0 for GitHub code scanning (``github/codeql-action/upload-sarif``).

Why these choices (GitHub's SARIF subset):
- results need ``ruleId``, ``message.text`` and at least one location, otherwise the upload is
  rejected ("locationFromSarifResult: expected at least one location"); the location is the
  model file's repo-relative path under ``%SRCROOT%``;
- no ``region``: a finding is about the whole (binary) file. SARIF 2.1.0 allows a physical
  location without a region for whole-artifact results, and upload-sarif then skips its
  line-hash fingerprinting (it only hashes results with a start line) instead of hashing a
  line of a binary file;
- our own ``partialFingerprints`` (model sha256 + rule id) so an alert stays one alert across
  runs, and a new model file (new sha256) opens a new one;
- rules carry ``shortDescription``/``fullDescription``/``help`` (shown on the alert) and
  ``properties.security-severity`` (a string, with the "security" tag) for GitHub's severity;
- an applied waiver becomes ``suppressions: [{kind: "external", ...}]``; a pass has no results
  but is still a complete run, which closes earlier alerts for that file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from scanner import __version__
from scanner.report import view
from scanner.report.findings import RULES, Finding, Rule, findings

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
TOOL_NAME = "backdoor-scanner"
FINGERPRINT_KEY = "backdoorScanner/v1"
SRCROOT = "%SRCROOT%"


def information_uri() -> str | None:
    """The project's URL from the installed package metadata ([project.urls]), if any."""
    try:
        from importlib.metadata import metadata

        md = metadata(TOOL_NAME)
    except Exception:  # not installed as a distribution
        return None
    for entry in md.get_all("Project-URL") or []:
        _, _, url = entry.partition(",")
        if url.strip().startswith(("http://", "https://")):
            return url.strip()
    home = md.get("Home-page")
    return home if home and home.startswith(("http://", "https://")) else None


def fingerprint(model_sha256: str, rule_id: str) -> str:
    """Stable identity of a finding: the same model file and rule are the same alert."""
    return hashlib.sha256(f"{model_sha256}:{rule_id}".encode()).hexdigest()


def _rule_descriptor(rule: Rule) -> dict:
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.short},
        "fullDescription": {"text": rule.full},
        "help": {"text": rule.help, "markdown": rule.help},
        "defaultConfiguration": {"level": rule.level},
        "properties": {"tags": list(rule.tags), "security-severity": rule.security_severity,
                       "precision": "medium", "problem.severity": rule.level},
    }


def model_uri_for(result: dict) -> str:
    """A repo-relative, forward-slash URI for the model when the caller gives none."""
    p = view.model_path(result).replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def _result(f: Finding, result: dict, model_uri: str, rule_index: int) -> dict:
    det = view.detection(result) or {}
    props = {"verdict": view.verdict(result), "sha256": view.model_sha256(result),
             "modelScore": view.finite_or_none(view.model_score(result)),
             "threshold": view.finite_or_none(view.threshold(result)),
             "flaggedClasses": [view.class_label(result, c) for c in view.flagged(result)],
             "method": det.get("method"), "toolVersion": result.get("tool_version", __version__)}
    out = {
        "ruleId": f.rule.id,
        "ruleIndex": rule_index,
        "level": f.rule.level,
        "kind": "fail",
        "message": {"text": f.message},
        "locations": [{"physicalLocation": {"artifactLocation": {
            "uri": model_uri, "uriBaseId": SRCROOT}}}],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint(view.model_sha256(result),
                                                             f.rule.id)},
        "properties": props,
    }
    if f.waived:
        out["suppressions"] = [{"kind": "external", "status": "accepted",
                                "justification": f.justification}]
    return out


def to_sarif_many(items: Iterable[tuple[dict, str | None]]) -> dict:
    """One SARIF log with one run covering several scanned models ((result, model_uri) pairs).

    One run per tool is what upload-sarif expects; scanning several models in one job should
    therefore produce one file from this function rather than several files of one run each.
    """
    rule_index = {r.id: i for i, r in enumerate(RULES)}
    results = []
    for result, uri in items:
        uri = uri or model_uri_for(result)
        results.extend(_result(f, result, uri, rule_index[f.rule.id]) for f in findings(result))
    driver = {"name": TOOL_NAME, "version": __version__, "semanticVersion": __version__,
              "rules": [_rule_descriptor(r) for r in RULES]}
    uri = information_uri()
    if uri:
        driver["informationUri"] = uri
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION,
            "runs": [{"tool": {"driver": driver}, "results": results}]}


def to_sarif(result: dict, model_uri: str | None = None) -> dict:
    """The SARIF log for one scan; ``model_uri`` is the model's path relative to the repo root."""
    return to_sarif_many([(result, model_uri)])
