"""Self-contained HTML report: one file, inline CSS, images as data URIs, charts as inline SVG.

Why self-contained: the report travels as a CI artifact, an e-mail attachment or a ticket
upload and must render offline and in sandboxed viewers (no JavaScript, no external fonts,
styles or images). Why these sections: a reviewer needs the verdict and the evidence side by
side: the reversed triggers (a real backdoor's trigger is a small crisp patch), the per-class
scores against the threshold, the repair's accuracy/ASR trajectory and the canary that proves
the scan could have caught a backdoor. Every string from the result is escaped: class names come
from untrusted label files and model metadata.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping

from scanner.report import view
from scanner.report.findings import findings
from scanner.report.images import ExamplePngs
from scanner.report.svg import FLAG_RED, Bar, Series, bar_chart, line_chart

MAX_TRIGGERS = 60  # beyond this, show the flagged and highest-scoring classes only
SERIES_COLOURS = {"cda": "#1565c0", "asr": FLAG_RED}
EXTRA_COLOURS = ("#6a1b9a", "#00838f", "#ef6c00", "#2e7d32")

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f6f8;color:#263238;
 font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif}
main{max-width:1120px;margin:0 auto;padding:0 24px 32px}
header.banner{padding:20px 24px 18px;color:#fff;margin-bottom:20px}
header.banner .inner{max-width:1072px;margin:0 auto}
.v-backdoor{background:#b71c1c}.v-pass{background:#2e7d32}.v-inconclusive{background:#e65100}
.v-other{background:#455a64}
.verdict{font-size:30px;font-weight:700;letter-spacing:.02em}
.meta{margin-top:6px;opacity:.95;overflow-wrap:anywhere}
.meta code{background:rgba(255,255,255,.16);padding:1px 5px;border-radius:3px}
section{background:#fff;border:1px solid #dde3e8;border-radius:8px;padding:16px 20px;
 margin:0 0 16px}
h2{font-size:17px;margin:0 0 12px;color:#37474f}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(190px,1fr));gap:12px;
 margin:0 0 16px}
.card{background:#fff;border:1px solid #dde3e8;border-radius:8px;padding:12px 16px}
.card .k{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:#607d8b}
.card .v{font-size:22px;font-weight:700;margin-top:2px;word-break:break-word}
.card .s{font-size:12px;color:#607d8b}
.card.bad .v{color:#c62828}.card.warn .v{color:#e65100}.card.good .v{color:#2e7d32}
.finding{border-left:6px solid #c62828;background:#fdecea}
.finding.warn{border-left-color:#e65100;background:#fff3e0}
.finding.waived{border-left-color:#78909c;background:#eceff1}
.finding .rule{font-weight:700}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:12px}
.trigger{border:2px solid #dde3e8;border-radius:8px;padding:8px;text-align:center;
 background:#fafbfc;position:relative}
.trigger img{width:128px;height:128px;image-rendering:pixelated;display:block;margin:0 auto 6px;
 background:#000;border-radius:3px}
.trigger .noimg{width:128px;height:128px;margin:0 auto 6px;display:flex;align-items:center;
 justify-content:center;color:#90a4ae;background:#eceff1;border-radius:3px;font-size:12px}
.grid.examples{grid-template-columns:repeat(auto-fill,minmax(300px,1fr))}
.pair{display:flex;gap:10px;justify-content:center;margin:4px 0 6px}
.pair figure{margin:0;flex:0 1 128px;min-width:0}
.pair img{width:128px;max-width:100%;height:auto;display:block;margin:0 auto 4px;
 border-radius:3px;image-rendering:crisp-edges;image-rendering:pixelated}
.pair figcaption{font-size:12px;color:#546e7a;word-break:break-word}
.pair figcaption b{color:#263238}.pair .flip b{color:#c62828}
.trigger .name{font-weight:600;word-break:break-word}
.trigger .score{font-size:12px;color:#546e7a}
.trigger.flagged{border:4px solid #d32f2f;background:#fff5f5;padding:6px}
.badge{display:inline-block;background:#d32f2f;color:#fff;font-size:11px;font-weight:700;
 text-transform:uppercase;letter-spacing:.06em;padding:1px 7px;border-radius:10px;
 position:absolute;top:6px;right:6px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eceff1;vertical-align:top}
th{color:#546e7a;font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.flagged td{color:#c62828;font-weight:700}
table.kv th{width:32%;text-transform:none;font-size:13px;letter-spacing:0;color:#546e7a}
.two{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.two section{margin:0}
ul{margin:0;padding-left:20px}
code{font-family:ui-monospace,'DejaVu Sans Mono',monospace;font-size:12.5px}
.muted{color:#78909c}
.ok{color:#2e7d32;font-weight:700}.bad{color:#c62828;font-weight:700}
footer{color:#90a4ae;font-size:12px;text-align:center;margin-top:8px}
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _header(result: dict) -> str:
    v = view.verdict(result)
    cls = f"v-{v}" if v in ("pass", "backdoor", "inconclusive") else "v-other"
    m = result.get("model") or {}
    bits = [f"Model <code>{_e(view.model_path(result))}</code>",
            f"sha256 <code>{_e(view.model_sha256(result))}</code>"]
    if m.get("format"):
        bits.append(f"format {_e(m['format'])}")
    if m.get("num_classes"):
        bits.append(f"{_e(m['num_classes'])} classes")
    bits.append(f"backdoor-scanner {_e(result.get('tool_version', ''))}")
    return (f'<header class="banner {cls}"><div class="inner">'
            f'<div class="verdict">{_e(view.verdict_title(result))}</div>'
            f'<div class="meta">{" · ".join(bits)}</div></div></header>')


def _card(key: str, value: str, sub: str = "", tone: str = "") -> str:
    return (f'<div class="card {tone}"><div class="k">{_e(key)}</div><div class="v">{value}</div>'
            + (f'<div class="s">{sub}</div>' if sub else "") + "</div>")


def _cards(result: dict) -> str:
    score, thr = view.model_score(result), view.threshold(result)
    det = view.detection(result)
    cards = []
    if det:
        above = view.is_number(score) and view.is_number(thr) and score >= thr
        cards.append(_card("Model score", _e(view.fmt(score)),
                           f"threshold {_e(view.fmt(thr))} · {_e(det.get('method', ''))}",
                           "bad" if above else ""))
        flagged = view.flagged(result)
        cards.append(_card("Flagged", _e(", ".join(view.class_label(result, c) for c in flagged)
                                         or "none"),
                           "most suspicious: " + _e(view.class_label(result, det.get("top_class"))),
                           "bad" if flagged else ("good" if view.verdict(result) == "pass" else "")))
    else:
        cards.append(_card("Detection", "not run", "the scan stopped before detection", "warn"))
    tr = result.get("trusted") or {}
    if tr:
        cards.append(_card("Clean accuracy", _e(view.fmt(tr.get("clean_accuracy"))),
                           f"{_e(tr.get('images', '-'))} trusted images"))
    c = result.get("canary")
    if c is not None:
        cards.append(_card("Canary", "detected" if c.get("detected") else "NOT detected",
                           f"target {_e(view.class_label(result, c.get('target')))}",
                           "good" if c.get("detected") else "warn"))
    g = view.gate(result)
    if "exit_code" in g:
        cards.append(_card("Gate exit code", _e(g["exit_code"]),
                           "waived" if g.get("waived") else "",
                           "good" if g["exit_code"] == 0 else "bad"))
    return f'<div class="cards">{"".join(cards)}</div>'


def _findings(result: dict) -> str:
    out = []
    for f in findings(result):
        tone = "waived" if f.waived else ("warn" if f.rule.level != "error" else "")
        extra = (f'<div class="muted">Waived: {_e(f.justification)}</div>' if f.waived else "")
        out.append(f'<section class="finding {tone}"><span class="rule">{_e(f.rule.id)} '
                   f'{_e(f.rule.name)}</span>: {_e(f.message)}{extra}'
                   f'<div class="muted">{_e(f.rule.help)}</div></section>')
    return "".join(out)


def _reasons(result: dict) -> str:
    reasons = result.get("reasons") or []
    if not reasons:
        return ""
    return ("<section><h2>Reasons</h2><ul>" + "".join(f"<li>{_e(r)}</li>" for r in reasons)
            + "</ul></section>")


def _shown_classes(result: dict, classes: list, rows: dict) -> tuple[list, str]:
    """At most MAX_TRIGGERS classes (flagged and highest scores first), and a note if cut."""
    if len(classes) <= MAX_TRIGGERS:
        return classes, ""
    flagged = set(view.flagged(result))

    def key(c):
        s = rows.get(c, {}).get("score")
        return (c in flagged, s if view.is_number(s) else float("-inf"))
    keep = set(sorted(classes, key=key, reverse=True)[:MAX_TRIGGERS])
    note = (f'<p class="muted">Showing {MAX_TRIGGERS} of {len(classes)} classes (flagged and '
            "highest scores); all triggers are in the triggers/ folder.</p>")
    return [c for c in classes if c in keep], note


def _example_pair(result: dict, ex: ExamplePngs) -> str:
    """Before/after images side by side, each captioned with the model's prediction."""
    target = _e(view.class_label(result, ex.cls))
    flip = ' class="flip"' if ex.pred_after == ex.cls != ex.pred_before else ""
    return ('<div class="pair">'
            f'<figure><img src="{_data_uri(ex.before)}" alt="trusted image without the trigger">'
            f'<figcaption>before: <b>{_e(view.class_label(result, ex.pred_before))}</b>'
            "</figcaption></figure>"
            f'<figure{flip}><img src="{_data_uri(ex.after)}" alt="the same image with the '
            f'reversed trigger for class {target}"><figcaption>with trigger: '
            f"<b>{_e(view.class_label(result, ex.pred_after))}</b></figcaption></figure></div>")


def _trigger_card(result: dict, c, row: dict, pngs: Mapping[int, bytes],
                  examples: Mapping[int, ExamplePngs]) -> str:
    is_flag = c in set(view.flagged(result))
    if c in examples:
        body = _example_pair(result, examples[c])
    elif c in pngs:
        body = (f'<img src="{_data_uri(pngs[c])}" alt="reversed trigger for class '
                f'{_e(view.class_label(result, c))}">')
    else:
        body = '<div class="noimg">no image</div>'
    name = f'<div class="name">{_e(view.class_label(result, c))}</div>'
    score = (f'<div class="score">score {_e(view.fmt(row.get("score")))} · L1 '
             f'{_e(view.fmt(row.get("trigger_l1"), 1))}</div>')
    # examples read top-down (class, then what its trigger does); a bare trigger keeps its
    # picture first, as before
    inner = name + body + score if c in examples else body + name + score
    return (f'<div class="trigger{" flagged" if is_flag else ""}">'
            + ('<span class="badge">flagged</span>' if is_flag else "") + inner + "</div>")


def _triggers(result: dict, pngs: Mapping[int, bytes],
              examples: Mapping[int, ExamplePngs] | None = None) -> str:
    examples = examples or {}
    if not pngs and not examples:  # no pictures: the score chart below already shows every class
        return ""
    rows = {r.get("cls"): r for r in view.per_class(result)}
    classes = sorted(set(rows) | set(pngs) | set(examples), key=lambda c: (c is None, c))
    classes, note = _shown_classes(result, classes, rows)
    cards = "".join(_trigger_card(result, c, rows.get(c, {}), pngs, examples) for c in classes)
    if examples:
        return ("<section><h2>Reversed triggers on a trusted image</h2><p class=\"muted\">Each "
                "class's reversed trigger stamped on a trusted image, with the model's prediction "
                "before and after: a backdoor's trigger is typically a small, crisp patch that "
                f"turns the prediction into its class.</p>{note}<div class=\"grid examples\">"
                f"{cards}</div></section>")
    return ("<section><h2>Reversed triggers</h2><p class=\"muted\">What the detector found "
            "could force each class: a backdoor's trigger is typically small and crisp, a clean "
            f"class's is diffuse.</p>{note}<div class=\"grid\">{cards}</div></section>")


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
                     f"<td>{_e(view.class_label(result, c))}</td>"
                     f'<td class="num">{_e(view.fmt(r.get("score")))}</td>'
                     f'<td class="num">{_e(view.fmt(r.get("asr_pivot"), 2))}</td>'
                     f'<td class="num">{_e(view.fmt(r.get("asr_tuned"), 2))}</td>'
                     f'<td class="num">{_e(view.fmt(r.get("trigger_l1"), 1))}</td>'
                     f'<td>{"flagged" if c in flagged else ""}</td></tr>')
    table.append("</table>")
    return (f"<section><h2>Per-class scores ({_e(det.get('method', ''))}, model score "
            f"{_e(view.fmt(view.model_score(result)))} vs threshold "
            f"{_e(view.fmt(view.threshold(result)))})</h2>{chart}"
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
    notes = "".join(f"<li>{_e(n)}</li>" for n in r.get("notes") or [])
    return (f"<section><h2>Repair</h2><p>Held-out clean accuracy {_e(view.fmt(r.get('pivot_cda')))}"
            f" → {_e(view.fmt(r.get('best_cda')))} at step {_e(r.get('best_step', '-'))}; "
            f"moved: <b>{_e(view.fmt(r.get('moved')))}</b>; parameter distance "
            f"{_e(view.fmt(r.get('param_distance')))}; {_e(view.fmt(r.get('wall_s'), 1))} s.</p>"
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
            ("Target class", _e(view.class_label(result, c.get("target")))),
            ("Implanted", _e(view.fmt(c.get("implanted")))),
            ("Implant ASR", _e(view.fmt(c.get("implant_asr"), 2))),
            ("Implant clean accuracy", _e(view.fmt(c.get("implant_cda"))))]
    if "model_score" in c:
        rows += [("Canary model score", _e(view.fmt(c.get("model_score")))),
                 ("Most suspicious class", _e(view.class_label(result, c.get("top_class"))))]
    rows += [("Note", _e(n)) for n in c.get("notes") or []]
    return ("<section><h2>Sensitivity canary</h2><p class=\"muted\">A known backdoor implanted "
            "into a copy of the model; the same scan must find it before a pass is trusted.</p>"
            + _kv(rows) + "</section>")


def _kv(rows: list[tuple[str, str]]) -> str:
    """A two-column table; values must already be escaped HTML."""
    return ('<table class="kv">' + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
            + "</table>")


def _waivers(result: dict) -> str:
    ws = view.waivers(result)
    if not ws:
        return ""
    rows = "".join(f"<tr><td>{_e(w.get('rule', '-'))}</td><td>{_e(w.get('status', '-'))}</td>"
                   f"<td>{_e(w.get('expires') or '-')}</td><td>{_e(w.get('reason') or '-')}</td>"
                   "</tr>" for w in ws)
    return ("<section><h2>Waivers</h2><table><tr><th>Rule</th><th>Status</th><th>Expires</th>"
            f"<th>Reason</th></tr>{rows}</table></section>")


def _settings(result: dict) -> str:
    s = result.get("settings") or {}
    rows = []
    for k, v in s.items():
        if isinstance(v, dict):
            v = ", ".join(f"{kk}={view.fmt(vv)}" for kk, vv in v.items())
        rows.append((k, _e(view.fmt(v))))
    m = result.get("model") or {}
    spec = m.get("spec") or {}
    if spec:
        shape = f"{spec.get('channels', '?')}×{spec.get('height', '?')}×{spec.get('width', '?')}"
        desc = f"{spec.get('layout', '')} {shape}, values {spec.get('value_range')}"
        for key in ("mean", "std", "graph_mean", "graph_std"):
            if spec.get(key) is not None:
                desc += f", {key} {spec[key]}"
        rows.append(("input", _e(desc)))
    t = result.get("timings") or {}
    trows = [(k, _e(view.fmt(v, 1) + " s")) for k, v in t.items()]
    tr = result.get("trusted") or {}
    if tr:
        trows += [("trusted data", _e(f"{tr.get('images', '-')} images from "
                                      f"{tr.get('source', '-')}"))]
    notes = [*(m.get("import_notes") or []), *(tr.get("notes") or []),
             *((view.detection(result) or {}).get("notes") or [])]
    trows += [("note", _e(n)) for n in notes]
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
        _triggers(result, pngs, examples), _scores(result), _repair(result), _canary(result),
        _waivers(result), _settings(result),
        f"<footer>backdoor-scanner {_e(result.get('tool_version', ''))} · this report renders "
        "the scan result; it computes nothing</footer>", "</main>"])
    title = f"Backdoor scan: {view.verdict_title(result)} · {view.model_path(result)}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n")
