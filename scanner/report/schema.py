"""The versioned JSON report (report.json / ``--json``) and its JSON Schema.

Why: CI systems and dashboards parse report.json; a published schema with a version lets them
detect changes instead of breaking silently. The schema file (report.schema.json, beside this
module) documents every field; this module only stamps the version, adds the trigger picture
paths and makes the dict strictly valid JSON (NaN/inf become null).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from scanner.report import view

SCHEMA_VERSION = "1.0"
SCHEMA_FILE = "report.schema.json"

_REQUIRED = ("schema_version", "tool_version", "verdict", "reasons", "model", "trusted",
             "settings", "detection", "repair", "canary", "timings", "trigger_images")


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The report's JSON Schema (draft 2020-12), read from the package."""
    return json.loads(resources.files("scanner.report").joinpath(SCHEMA_FILE).read_text("utf-8"))


def to_report_json(result: dict, trigger_paths: dict[int, str] | None = None) -> dict:
    """The report object for ``result`` (a ``ScanResult.to_dict()``, optionally with waivers/gate).

    ``trigger_paths`` maps class index to the trigger PNG's path relative to the report's
    directory. Keys of the input are kept as they are (consumers ignore unknown keys); the input
    dict is not modified.
    """
    out = {"schema_version": SCHEMA_VERSION}
    out.update(view.finite_or_none(result))
    out["schema_version"] = SCHEMA_VERSION
    out.setdefault("tool_version", "")
    out["trigger_images"] = {str(int(k)): str(v).replace("\\", "/")
                             for k, v in sorted((trigger_paths or {}).items())}
    return out


def validate_report(report: dict) -> list[str]:
    """Problems with ``report`` against the schema; empty when valid.

    Uses the ``jsonschema`` package when it is installed (full validation); otherwise checks the
    required top-level keys and the verdict only, so the function works in a minimal install.
    """
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - depends on the environment
        errors = [f"missing key {k!r}" for k in _REQUIRED if k not in report]
        if report.get("verdict") not in ("pass", "backdoor", "inconclusive"):
            errors.append(f"bad verdict {report.get('verdict')!r}")
        return errors
    validator = jsonschema.Draft202012Validator(load_schema())
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(report), key=lambda e: list(e.absolute_path))]
