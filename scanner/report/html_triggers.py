"""The HTML report's gallery of reversed triggers, bare or stamped on a trusted image.

Why separate: this is the section a reviewer decides by (a real backdoor's trigger is a small
crisp patch that flips the prediction to its class, a clean class's is diffuse), and it has its
own rules: which classes to show when there are many, and the before/after pairs from
:func:`scanner.report.images.example_pngs` in place of the bare trigger where present.
"""

from __future__ import annotations

from collections.abc import Mapping

from scanner.report import view
from scanner.report.html_page import data_uri, esc
from scanner.report.images import ExamplePngs

MAX_TRIGGERS = 60  # beyond this, show the flagged and highest-scoring classes only


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
    target = esc(view.class_label(result, ex.cls))
    flip = ' class="flip"' if ex.pred_after == ex.cls != ex.pred_before else ""
    return ('<div class="pair">'
            f'<figure><img src="{data_uri(ex.before)}" alt="trusted image without the trigger">'
            f'<figcaption>before: <b>{esc(view.class_label(result, ex.pred_before))}</b>'
            "</figcaption></figure>"
            f'<figure{flip}><img src="{data_uri(ex.after)}" alt="the same image with the '
            f'reversed trigger for class {target}"><figcaption>with trigger: '
            f"<b>{esc(view.class_label(result, ex.pred_after))}</b></figcaption></figure></div>")


def _trigger_card(result: dict, c, row: dict, pngs: Mapping[int, bytes],
                  examples: Mapping[int, ExamplePngs]) -> str:
    is_flag = c in set(view.flagged(result))
    if c in examples:
        body = _example_pair(result, examples[c])
    elif c in pngs:
        body = (f'<img src="{data_uri(pngs[c])}" alt="reversed trigger for class '
                f'{esc(view.class_label(result, c))}">')
    else:
        body = '<div class="noimg">no image</div>'
    name = f'<div class="name">{esc(view.class_label(result, c))}</div>'
    score = (f'<div class="score">score {esc(view.fmt(row.get("score")))} · L1 '
             f'{esc(view.fmt(row.get("trigger_l1"), 1))}</div>')
    # examples read top-down (class, then what its trigger does); a bare trigger keeps its
    # picture first, as before
    inner = name + body + score if c in examples else body + name + score
    return (f'<div class="trigger{" flagged" if is_flag else ""}">'
            + ('<span class="badge">flagged</span>' if is_flag else "") + inner + "</div>")


def triggers_section(result: dict, pngs: Mapping[int, bytes],
                     examples: Mapping[int, ExamplePngs] | None = None) -> str:
    """The gallery section ("" without pictures): example pairs if given, else bare triggers."""
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
