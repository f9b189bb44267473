"""Markdown summary for ``$GITHUB_STEP_SUMMARY`` (and for pasting into a review).

Why: the job summary is the first thing a reviewer sees in GitHub Actions. It leads with a plain
heading that cannot be misread ("INCONCLUSIVE: not a pass"), then the numbers behind the verdict.
All text from the result (paths, class names, reasons) is escaped: GitHub renders inline HTML in
summaries, and a class name from a labels file is untrusted input.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from scanner.report import view
from scanner.report.findings import findings

MAX_CLASS_ROWS = 20  # beyond this, the table shows the highest scores (summaries are capped at 1 MiB)


def _md(x) -> str:
    """Escape text for a Markdown table cell or paragraph (HTML tags, pipes, line breaks).

    ``<`` and ``&`` are enough to stop HTML (GitHub renders inline HTML in summaries); ``>`` is
    kept readable, which is safe inside a line.
    """
    text = str(x).replace("&", "&amp;").replace("<", "&lt;")
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _code(x) -> str:
    return "`" + str(x).replace("`", "'").replace("\n", " ") + "`"


def _summary_rows(result: dict) -> list[tuple[str, str]]:
    det = view.detection(result)
    rows = [("Verdict", f"**{_md(view.verdict(result))}**")]
    g = view.gate(result)
    if "exit_code" in g:
        rows.append(("Gate exit code", f"{g['exit_code']}" + (" (waived)" if g.get("waived") else "")))
    if det:
        score, thr = view.model_score(result), view.threshold(result)
        side = ""
        if view.is_number(score) and view.is_number(thr):
            side = " (at or above the threshold)" if score >= thr else " (below the threshold)"
        rows.append(("Model score", f"{view.fmt(score)} vs threshold {view.fmt(thr)}{side}"))
        rows.append(("Method", _md(det.get("method", "-"))))
        flagged = view.flagged(result)
        rows.append(("Flagged class" + ("es" if len(flagged) > 1 else ""),
                     ", ".join(f"**{_md(view.class_label(result, c))}**" for c in flagged)
                     or "none"))
        if det.get("top_class") is not None:
            rows.append(("Most suspicious class", _md(view.class_label(result, det["top_class"]))))
    else:
        rows.append(("Detection", "not run (the scan stopped before it)"))
    tr = result.get("trusted") or {}
    if tr:
        rows.append(("Trusted data", f"{tr.get('images', '-')} images from "
                     f"{_code(tr.get('source', '-'))}, clean accuracy "
                     f"{view.fmt(tr.get('clean_accuracy'))}"))
    s = result.get("settings") or {}
    rows.append(("Budget", f"{_md(s.get('budget_level', '-'))} on {_md(s.get('device', '-'))}, "
                 f"seed {s.get('seed', '-')}, canary {'on' if s.get('canary', True) else 'off'}, "
                 f"{_md(s.get('precision', 'fp32'))} loops"))
    return rows


def _class_table(result: dict) -> list[str]:
    rows = view.per_class(result)
    if not rows:
        return []
    flagged = set(view.flagged(result))
    shown = rows
    note = ""
    if len(rows) > MAX_CLASS_ROWS:
        def key(r):
            return r.get("score") if view.is_number(r.get("score")) else float("-inf")
        shown = sorted(rows, key=key, reverse=True)[:MAX_CLASS_ROWS]
        note = (f"\n_Showing the {MAX_CLASS_ROWS} highest of {len(rows)} classes; "
                "report.html and report.json have all of them._")
    out = ["### Per-class scores", "",
           "| Class | Score | ASR suspect | ASR repaired | Trigger L1 | Flag |",
           "|---|---:|---:|---:|---:|:---:|"]
    for r in shown:
        c = r.get("cls")
        out.append(f"| {_md(view.class_label(result, c))} | {view.fmt(r.get('score'))} | "
                   f"{view.fmt(r.get('asr_pivot'), 2)} | {view.fmt(r.get('asr_tuned'), 2)} | "
                   f"{view.fmt(r.get('trigger_l1'), 1)} | {'**FLAGGED**' if c in flagged else ''} |")
    return out + ([note] if note else []) + [""]


def _canary(result: dict) -> list[str]:
    c = result.get("canary")
    s = result.get("settings") or {}
    out = ["### Sensitivity canary", ""]
    if c is None:
        out.append("Disabled: a pass is unverified." if not s.get("canary", True)
                   else "Not run (not needed for this verdict, or the scan stopped earlier).")
        return out + [""]
    state = "**detected**" if c.get("detected") else "**NOT detected**"
    out.append(f"Known backdoor implanted for class {_md(view.class_label(result, c.get('target')))}"
               f" (implanted: {view.fmt(c.get('implanted'))}, implant ASR "
               f"{view.fmt(c.get('implant_asr'), 2)}, clean accuracy "
               f"{view.fmt(c.get('implant_cda'))}, the model's "
               f"{view.fmt(c.get('original_cda'))}): {state}"
               + (f", canary score {view.fmt(c.get('model_score'))}, most suspicious class "
                  f"{_md(view.class_label(result, c.get('top_class')))}"
                  if "model_score" in c else "") + ".")
    out += [f"- {_md(n)}" for n in c.get("notes") or []]
    return out + [""]


def _repair(result: dict) -> list[str]:
    r = result.get("repair")
    if not r:
        return []
    return ["### Repair", "",
            f"Held-out clean accuracy {view.fmt(r.get('pivot_cda'))} -> "
            f"{view.fmt(r.get('best_cda'))} at step {r.get('best_step', '-')}; moved: "
            f"{view.fmt(r.get('moved'))}; parameter distance {view.fmt(r.get('param_distance'))}; "
            f"{len(r.get('trajectory') or [])} checkpoints, {view.fmt(r.get('wall_s'), 1)} s.",
            *[f"- {_md(n)}" for n in r.get("notes") or []], ""]


def _waivers(result: dict) -> list[str]:
    ws = view.waivers(result)
    if not ws:
        return []
    out = ["### Waivers", "", "| Rule | Status | Expires | Reason |", "|---|---|---|---|"]
    for w in ws:
        out.append(f"| {_md(w.get('rule', '-'))} | {_md(w.get('status', '-'))} | "
                   f"{_md(w.get('expires') or '-')} | {_md(w.get('reason') or '-')} |")
    return out + [""]


def to_markdown(result: dict) -> str:
    """A GitHub-flavoured Markdown summary of one scan result."""
    lines = [f"## Backdoor scan: {_md(view.verdict_title(result))}", "",
             f"Model {_code(view.model_path(result))}, sha256 {_code(view.model_sha256(result))}",
             ""]
    for f in findings(result):
        tag = " (waived: " + _md(f.justification) + ")" if f.waived else ""
        lines += [f"> **{f.rule.id} {f.rule.name}**{tag}: {_md(f.message)}", ""]
    lines += ["| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _summary_rows(result)]
    lines.append("")
    reasons = result.get("reasons") or []
    if reasons:
        lines += ["### Reasons", "", *[f"- {_md(r)}" for r in reasons], ""]
    lines += _class_table(result)
    lines += _canary(result)
    lines += _repair(result)
    lines += _waivers(result)
    t = result.get("timings") or {}
    if t:
        parts = [f"{_md(k.removesuffix('_s'))} {view.fmt(v, 1)}" for k, v in t.items()]
        lines += [f"Timings (s): {', '.join(parts)}. Tool version "
                  f"{_md(result.get('tool_version', '-'))}.", ""]
    return "\n".join(lines)


def append_step_summary(md: str, env: Mapping[str, str] = os.environ) -> Path | None:
    """Append ``md`` to the file named by ``$GITHUB_STEP_SUMMARY``; returns it, or None if unset.

    GitHub Actions creates that file per step and renders it on the run's summary page; outside
    Actions the variable is absent and nothing is written.
    """
    target = env.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(md if md.endswith("\n") else md + "\n")
        fh.write("\n")
    return path
