"""Write every report format for one scan into a folder, each file atomically.

Why atomic: CI uploads the report folder as soon as the step ends and dashboards poll it; a
reader must see either the previous complete file or the new complete file, never a truncated
one (a half-written report.json or SARIF breaks the upload, not just the display). Each file is
written to a temporary name in the same folder and moved into place with ``os.replace``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scanner.io.atomic import atomic_write
from scanner.report.html import to_html
from scanner.report.images import ExamplePngs, example_pngs, trigger_pngs
from scanner.report.junit import to_junit
from scanner.report.markdown import to_markdown
from scanner.report.sarif import to_sarif
from scanner.report.schema import to_report_json

FILE_NAMES = {"json": "report.json", "sarif": "report.sarif", "junit": "report.junit.xml",
              "md": "report.md", "html": "report.html"}
TRIGGER_DIR = "triggers"
ALL_FORMATS = tuple(FILE_NAMES)


def _json_text(obj: Any) -> str:
    # allow_nan=False: the renderers already turned NaN/inf into null; fail loudly if not.
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _write_examples(out_dir: Path, examples: dict[int, ExamplePngs]) -> dict[str, Path]:
    """``triggers/class_<i>_before.png`` and ``_after.png`` for each class with an example."""
    written: dict[str, Path] = {}
    for cls, ex in sorted(examples.items()):
        for side, png in (("before", ex.before), ("after", ex.after)):
            written[f"example_{cls}_{side}"] = atomic_write(
                out_dir / TRIGGER_DIR / f"class_{cls}_{side}.png", png)
    return written


def write_reports(result: dict, out_dir: Path, *, triggers: Any | None = None,
                  examples: Iterable[dict] | None = None, model_uri: str | None = None,
                  formats: Iterable[str] = ALL_FORMATS) -> dict[str, Path]:
    """Write the requested formats (json, sarif, junit, md, html) and trigger PNGs.

    Returns format -> path, plus ``"trigger_<cls>"`` -> path for every trigger picture and
    ``"example_<cls>_before"``/``"_after"`` for every trigger example. Trigger PNGs are written to
    ``out_dir/triggers/class_<cls>.png`` whenever ``triggers`` is given; report.json lists them
    by relative path and report.html embeds the same bytes. ``examples`` (the scan's
    ``artifacts["trigger_examples"]``) adds ``class_<cls>_before.png``/``_after.png`` there, and
    report.html then shows those pairs instead of the bare triggers.
    """
    formats = tuple(formats)
    unknown = [f for f in formats if f not in FILE_NAMES]
    if unknown:
        raise ValueError(f"unknown report format(s) {unknown}; choose from {list(FILE_NAMES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    pngs = trigger_pngs(triggers)
    pairs = example_pngs(examples)
    rel: dict[int, str] = {}
    if pngs or pairs:
        (out_dir / TRIGGER_DIR).mkdir(exist_ok=True)
    for cls, png in sorted(pngs.items()):
        name = f"{TRIGGER_DIR}/class_{cls}.png"
        written[f"trigger_{cls}"] = atomic_write(out_dir / name, png)
        rel[cls] = name
    written.update(_write_examples(out_dir, pairs))
    renderers = {
        "json": lambda: _json_text(to_report_json(result, rel)),
        "sarif": lambda: _json_text(to_sarif(result, model_uri)),
        "junit": lambda: to_junit([result]),
        "md": lambda: to_markdown(result),
        "html": lambda: to_html(result, pngs, pairs),
    }
    for fmt in formats:
        written[fmt] = atomic_write(out_dir / FILE_NAMES[fmt], renderers[fmt]())
    return written
