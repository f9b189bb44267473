"""Self-contained HTML report: one file, inline CSS, images as data URIs, charts as inline SVG.

Why these sections: a reviewer needs the verdict and the evidence side by side: the reversed
triggers (a real backdoor's trigger is a small crisp patch), the per-class scores against the
threshold, the repair's accuracy/ASR trajectory and the canary that proves the scan could have
caught a backdoor. Every string from the result is escaped: class names come from untrusted label
files and model metadata. This module assembles the sections; the page frame (stylesheet, head,
escaping) is :mod:`scanner.report.html_page` and the trigger gallery is
:mod:`scanner.report.html_triggers`.
"""

from __future__ import annotations

from collections.abc import Mapping

from scanner.report import view
from scanner.report.findings import findings
from scanner.report.html_page import esc, page
from scanner.report.html_triggers import triggers_section
from scanner.report.images import ExamplePngs
from scanner.report.svg import FLAG_RED, Bar, Series, bar_chart, line_chart

SERIES_COLOURS = {"cda": "#1565c0", "asr": FLAG_RED}
EXTRA_COLOURS = ("#6a1b9a", "#00838f", "#ef6c00", "#2e7d32")


def _header(result: dict) -> str:
    v = view.verdict(result)
    cls = f"v-{v}" if v in ("pass", "backdoor", "inconclusive") else "v-other"
    m = result.get("model") or {}
    bits = [f"Model <code>{esc(view.model_path(result))}</code>",
            f"sha256 <code>{esc(view.model_sha256(result))}</code>"]
    if m.get("format"):
        bits.append(f"format {esc(m['format'])}")
    if m.get("num_classes"):
        bits.append(f"{esc(m['num_classes'])} classes")
    bits.append(f"backdoor-scanner {esc(result.get('tool_version', ''))}")
    return (f'<header class="banner {cls}"><div class="inner">'
            f'<div class="verdict">{esc(view.verdict_title(result))}</div>'
            f'<div class="meta">{" · ".join(bits)}</div></div></header>')


def _card(key: str, value: str, sub: str = "", tone: str = "") -> str:
    return (f'<div class="card {tone}"><div class="k">{esc(key)}</div><div class="v">{value}</div>'
            + (f'<div class="s">{sub}</div>' if sub else "") + "</div>")


def _cards(result: dict) -> str:
    score, thr = view.model_score(result), view.threshold(result)
    det = view.detection(result)
    cards = []
    if det:
        above = view.is_number(score) and view.is_number(thr) and score >= thr
        cards.append(_card("Model score", esc(view.fmt(score)),
                           f"threshold {esc(view.fmt(thr))} · {esc(det.get('method', ''))}",
                           "bad" if above else ""))
        flagged = view.flagged(result)
        cards.append(_card("Flagged", esc(", ".join(view.class_label(result, c) for c in flagged)
                                         or "none"),
                           "most suspicious: "
                           + esc(view.class_label(result, det.get("top_class"))),
                           "bad" if flagged else ("good" if view.verdict(result) == "pass" else "")))
    else:
        cards.append(_card("Detection", "not run", "the scan stopped before detection", "warn"))
    tr = result.get("trusted") or {}
    if tr:
        cards.append(_card("Clean accuracy", esc(view.fmt(tr.get("clean_accuracy"))),
                           f"{esc(tr.get('images', '-'))} trusted images"))
    c = result.get("canary")
    if c is not None:
        cards.append(_card("Canary", "detected" if c.get("detected") else "NOT detected",
                           f"target {esc(view.class_label(result, c.get('target')))}",
                           "good" if c.get("detected") else "warn"))
    g = view.gate(result)
    if "exit_code" in g:
        cards.append(_card("Gate exit code", esc(g["exit_code"]),
                           "waived" if g.get("waived") else "",
                           "good" if g["exit_code"] == 0 else "bad"))
    return f'<div class="cards">{"".join(cards)}</div>'


def _findings(result: dict) -> str:
    out = []
    for f in findings(result):
        tone = "waived" if f.waived else ("warn" if f.rule.level != "error" else "")
        extra = (f'<div class="muted">Waived: {esc(f.justification)}</div>' if f.waived else "")
        out.append(f'<section class="finding {tone}"><span class="rule">{esc(f.rule.id)} '
                   f'{esc(f.rule.name)}</span>: {esc(f.message)}{extra}'
                   f'<div class="muted">{esc(f.rule.help)}</div></section>')
    return "".join(out)


def _reasons(result: dict) -> str:
    reasons = result.get("reasons") or []
    if not reasons:
        return ""
    return ("<section><h2>Reasons</h2><ul>" + "".join(f"<li>{esc(r)}</li>" for r in reasons)
            + "</ul></section>")

def _scores(result: dict) -> str:
    rows = view.per_class(result)
    if not rows:
        return ""
    flagged = set(view.flagged(result))
    bars = [Bar(view.class_name(result, r.get("cls")), r.get("score"), r.get("cls") in flagged)
            for r in rows]
    det = view.detection(result) or {}
    chart = bar_chart(bars, threshold=view.threshold(result),
                      title=f"{det.get('method', 'detector')} per-class scores")
    table = ['<table><tr><th>Class</th><th class="num">Score</th><th class="num">ASR suspect'
             '</th><th class="num">ASR repaired</th><th class="num">Trigger L1</th><th>Flag</th>'
             "</tr>"]
    for r in rows:
        c = r.get("cls")
        tr_cls = ' class="flagged"' if c in flagged else ""
        table.append(f"<tr{tr_cls}>"
                     f"<td>{esc(view.class_label(result, c))}</td>"
                     f'<td class="num">{esc(view.fmt(r.get("score")))}</td>'
                     f'<td class="num">{esc(view.fmt(r.get("asr_pivot"), 2))}</td>'
                     f'<td class="num">{esc(view.fmt(r.get("asr_tuned"), 2))}</td>'
                     f'<td class="num">{esc(view.fmt(r.get("trigger_l1"), 1))}</td>'
                     f'<td>{"flagged" if c in flagged else ""}</td></tr>')
    table.append("</table>")
    return (f"<section><h2>Per-class scores ({esc(det.get('method', ''))}, model score "
            f"{esc(view.fmt(view.model_score(result)))} vs threshold "
            f"{esc(view.fmt(view.threshold(result)))})</h2>{chart}"
            f"<details><summary>Table</summary>{''.join(table)}</details></section>")


def _repair(result: dict) -> str:
    r = result.get("repair")
    if not r:
        return ""
    traj = r.get("trajectory") or []
    keys = []
    for point in traj:
        keys += [k for k, v in point.items()
                 if k != "step" and view.is_number(v) and k not in keys]
    series = []
    for i, k in enumerate(keys):
        colour = SERIES_COLOURS.get(k, EXTRA_COLOURS[i % len(EXTRA_COLOURS)])
        series.append(Series(k.upper() if k in ("cda", "asr") else k,
                             [(p["step"], p[k]) for p in traj
                              if view.is_number(p.get("step")) and view.is_number(p.get(k))],
                             colour))
    floor = None
    drop = (result.get("settings") or {}).get("max_cda_drop")
    if view.is_number(r.get("pivot_cda")) and view.is_number(drop):
        floor = r["pivot_cda"] - drop
    chart = (line_chart(series, title="repair trajectory", y_label="fraction",
                        marker_x=r.get("best_step"), marker_label=f"best step {r.get('best_step')}",
                        hline=floor, hline_label=f"accuracy floor {view.fmt(floor)}")
             if series else '<p class="muted">No trajectory recorded.</p>')
    notes = "".join(f"<li>{esc(n)}</li>" for n in r.get("notes") or [])
    return (f"<section><h2>Repair</h2><p>Held-out clean accuracy "
            f"{esc(view.fmt(r.get('pivot_cda')))}"
            f" → {esc(view.fmt(r.get('best_cda')))} at step {esc(r.get('best_step', '-'))}; "
            f"moved: <b>{esc(view.fmt(r.get('moved')))}</b>; parameter distance "
            f"{esc(view.fmt(r.get('param_distance')))}; {esc(view.fmt(r.get('wall_s'), 1))} s.</p>"
            f"{chart}" + (f"<ul>{notes}</ul>" if notes else "") + "</section>")


def _canary(result: dict) -> str:
    c = result.get("canary")
    s = result.get("settings") or {}
    if c is None:
        text = ("Disabled: a pass is <b>unverified</b>." if not s.get("canary", True)
                else "Not run (not needed for this verdict, or the scan stopped earlier).")
        return f"<section><h2>Sensitivity canary</h2><p>{text}</p></section>"
    state = ('<span class="ok">detected</span>' if c.get("detected")
             else '<span class="bad">NOT detected</span>')
    rows = [("Result", state),
            ("Target class", esc(view.class_label(result, c.get("target")))),
            ("Implanted", esc(view.fmt(c.get("implanted")))),
            ("Implant ASR", esc(view.fmt(c.get("implant_asr"), 2))),
            ("Implant clean accuracy", esc(view.fmt(c.get("implant_cda")))),
            ("Model's clean accuracy", esc(view.fmt(c.get("original_cda"))))]
    if "model_score" in c:
        rows += [("Canary model score", esc(view.fmt(c.get("model_score")))),
                 ("Most suspicious class", esc(view.class_label(result, c.get("top_class"))))]
    rows += [("Note", esc(n)) for n in c.get("notes") or []]
    return ("<section><h2>Sensitivity canary</h2><p class=\"muted\">A known backdoor implanted "
            "into a copy of the model; the same scan must find it before a pass is trusted.</p>"
            + _kv(rows) + "</section>")


def _kv(rows: list[tuple[str, str]]) -> str:
    """A two-column table; values must already be escaped HTML."""
    return ('<table class="kv">'
            + "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
            + "</table>")


def _waivers(result: dict) -> str:
    ws = view.waivers(result)
    if not ws:
        return ""
    rows = "".join(f"<tr><td>{esc(w.get('rule', '-'))}</td><td>{esc(w.get('status', '-'))}</td>"
                   f"<td>{esc(w.get('expires') or '-')}</td><td>{esc(w.get('reason') or '-')}</td>"
                   "</tr>" for w in ws)
    return ("<section><h2>Waivers</h2><table><tr><th>Rule</th><th>Status</th><th>Expires</th>"
            f"<th>Reason</th></tr>{rows}</table></section>")


def _settings(result: dict) -> str:
    s = result.get("settings") or {}
    rows = []
    for k, v in s.items():
        if isinstance(v, dict):
            v = ", ".join(f"{kk}={view.fmt(vv)}" for kk, vv in v.items())
        rows.append((k, esc(view.fmt(v))))
    m = result.get("model") or {}
    spec = m.get("spec") or {}
    if spec:
        shape = f"{spec.get('channels', '?')}×{spec.get('height', '?')}×{spec.get('width', '?')}"
        desc = f"{spec.get('layout', '')} {shape}, values {spec.get('value_range')}"
        for key in ("mean", "std", "graph_mean", "graph_std"):
            if spec.get(key) is not None:
                desc += f", {key} {spec[key]}"
        rows.append(("input", esc(desc)))
    t = result.get("timings") or {}
    trows = [(k, esc(view.fmt(v, 1) + " s")) for k, v in t.items()]
    tr = result.get("trusted") or {}
    if tr:
        trows += [("trusted data", esc(f"{tr.get('images', '-')} images from "
                                      f"{tr.get('source', '-')}"))]
    notes = [*(m.get("import_notes") or []), *(tr.get("notes") or []),
             *((view.detection(result) or {}).get("notes") or [])]
    trows += [("note", esc(n)) for n in notes]
    return ('<div class="two"><section><h2>Settings</h2>' + _kv(rows) + "</section>"
            "<section><h2>Timings and data</h2>" + _kv(trows) + "</section></div>")


def to_html(result: dict, pngs: Mapping[int, bytes] | None = None,
            examples: Mapping[int, ExamplePngs] | None = None) -> str:
    """The HTML report for one scan result.

    ``pngs`` maps class index to trigger PNG bytes; ``examples`` (from
    :func:`scanner.report.images.example_pngs`) maps class index to the trigger stamped on a
    trusted image, shown instead of the bare trigger where present.
    """
    pngs = pngs or {}
    body = "".join([
        _header(result), "<main>", _cards(result), _findings(result), _reasons(result),
        triggers_section(result, pngs, examples), _scores(result), _repair(result), _canary(result),
        _waivers(result), _settings(result),
        f"<footer>backdoor-scanner {esc(result.get('tool_version', ''))} · this report renders "
        "the scan result; it computes nothing</footer>", "</main>"])
    title = f"Backdoor scan: {view.verdict_title(result)} · {view.model_path(result)}"
    return page(title, body)
