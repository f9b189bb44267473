"""Tiny inline-SVG charts (bar chart with a threshold line, line chart) for the HTML report.

Why hand-written SVG: the report must be one self-contained file that opens offline, in a CI
artifact viewer or a mail attachment, with no JavaScript and no plotting dependency. Two chart
types are all the report needs. Every text drawn is escaped by the caller-independent ``_e``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

from scanner.report.view import fmt, is_number

FLAG_RED = "#d32f2f"
BAR_GREY = "#90a4ae"
AXIS = "#546e7a"
GRID = "#e0e6ea"
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif\""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _clip(label: str, n: int) -> str:
    """Shorten a label to ``n`` characters with an ellipsis (the full text is in the tooltip)."""
    return label if len(label) <= n else label[: max(1, n - 1)] + "\u2026"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1-2-5 steps), for readable axes."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


@dataclass
class Bar:
    label: str
    value: float | None
    highlight: bool = False


def bar_chart(bars: Sequence[Bar], *, threshold: float | None, title: str,
              width: int = 1040, height: int = 300) -> str:
    """Vertical bars from zero, highlighted bars in red, a dashed threshold line.

    Non-finite values get no bar and an "n/a" mark. Labels are drawn only while they fit.
    """
    n = max(1, len(bars))
    slot = (width - 56 - 16) / n
    show_labels = slot >= 14
    fit = max(3, int(slot / 7))  # characters that fit under a bar at 12px
    rotate = show_labels and slot < 48
    left, right, top, bottom = 56, 16, 24, (84 if rotate else 40)
    height += bottom - 40
    pw, ph = width - left - right, height - top - bottom
    vals = [b.value for b in bars if is_number(b.value)]
    lo = min([0.0, *vals, *([threshold] if is_number(threshold) else [])])
    hi = max([0.0, *vals, *([threshold] if is_number(threshold) else [])])
    if hi - lo < 1e-9:
        hi = lo + 1.0
    pad = (hi - lo) * 0.08
    ticks = nice_ticks(lo - (pad if lo < 0 else 0), hi + pad)
    lo, hi = min(ticks[0], lo), max(ticks[-1], hi)

    def y(v: float) -> float:
        return top + ph * (hi - v) / (hi - lo)

    parts = [f'<svg class="chart" role="img" aria-label="{_e(title)}" viewBox="0 0 {width} {height}"'
             f' width="100%" xmlns="http://www.w3.org/2000/svg" {FONT} font-size="12">',
             f"<title>{_e(title)}</title>"]
    for t in ticks:
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                     f'stroke="{GRID}"/>')
        parts.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" fill="{AXIS}">'
                     f"{_e(fmt(t, 2))}</text>")
    bw = max(1.0, slot * 0.7)
    for i, b in enumerate(bars):
        x = left + i * slot + (slot - bw) / 2
        cx = left + i * slot + slot / 2
        if is_number(b.value):
            y0, y1 = sorted((y(0.0), y(b.value)))
            colour = FLAG_RED if b.highlight else BAR_GREY
            parts.append(f'<rect x="{x:.1f}" y="{y0:.1f}" width="{bw:.1f}" '
                         f'height="{max(1.0, y1 - y0):.1f}" fill="{colour}">'
                         f"<title>{_e(b.label)}: {_e(fmt(b.value))}</title></rect>")
            if show_labels and slot >= 36:
                vy = y(b.value) - 4 if b.value >= 0 else y(b.value) + 13
                bold = ' font-weight="bold"' if b.highlight else ""
                parts.append(f'<text x="{cx:.1f}" y="{vy:.1f}" text-anchor="middle" '
                             f'font-size="11" fill="{FLAG_RED if b.highlight else AXIS}"{bold}>'
                             f"{_e(fmt(b.value, 2))}</text>")
        else:
            parts.append(f'<text x="{cx:.1f}" y="{y(0.0) - 4:.1f}" text-anchor="middle" '
                         f'fill="{AXIS}">n/a</text>')
        if show_labels:
            ly = top + ph + 16
            weight = ' font-weight="bold"' if b.highlight else ""
            fill = FLAG_RED if b.highlight else "#263238"
            if rotate:
                parts.append(f'<text x="{cx:.1f}" y="{ly:.1f}" text-anchor="end" fill="{fill}"'
                             f'{weight} transform="rotate(-45 {cx:.1f} {ly:.1f})">'
                             f"{_e(_clip(b.label, 14))}</text>")
            else:
                parts.append(f'<text x="{cx:.1f}" y="{ly:.1f}" text-anchor="middle" '
                             f'fill="{fill}"{weight}>{_e(_clip(b.label, fit))}</text>')
    parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(0.0):.1f}" y2="{y(0.0):.1f}" '
                 f'stroke="{AXIS}"/>')
    if is_number(threshold):
        ty = y(threshold)
        parts.append(f'<line class="threshold" x1="{left}" x2="{left + pw}" y1="{ty:.1f}" '
                     f'y2="{ty:.1f}" stroke="{FLAG_RED}" stroke-width="1.5" '
                     f'stroke-dasharray="6 4"/>')
        parts.append(f'<text x="{left + pw - 4}" y="{ty - 5:.1f}" text-anchor="end" '
                     f'fill="{FLAG_RED}" font-weight="bold">threshold {_e(fmt(threshold))}</text>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]
    colour: str


def line_chart(series: Sequence[Series], *, title: str, y_label: str = "",
               marker_x: float | None = None, marker_label: str = "",
               hline: float | None = None, hline_label: str = "",
               y_range: tuple[float, float] = (0.0, 1.0),
               width: int = 1040, height: int = 280) -> str:
    """Lines over a shared x axis (repair step), an optional vertical marker and horizontal line."""
    left, right, top, bottom = 56, 150, 20, 40
    pw, ph = width - left - right, height - top - bottom
    xs = [x for s in series for x, _ in s.points] + ([marker_x] if is_number(marker_x) else [])
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x1 - x0 < 1e-9:
        x1 = x0 + 1.0
    y0, y1 = y_range
    ys = [v for s in series for _, v in s.points]
    if ys:
        y0, y1 = min(y0, min(ys)), max(y1, max(ys))

    def px(x: float) -> float:
        return left + pw * (x - x0) / (x1 - x0)

    def py(v: float) -> float:
        return top + ph * (y1 - v) / (y1 - y0)

    parts = [f'<svg class="chart" role="img" aria-label="{_e(title)}" viewBox="0 0 {width} {height}"'
             f' width="100%" xmlns="http://www.w3.org/2000/svg" {FONT} font-size="12">',
             f"<title>{_e(title)}</title>"]
    for t in nice_ticks(y0, y1):
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
                     f'stroke="{GRID}"/><text x="{left - 6}" y="{py(t) + 4:.1f}" '
                     f'text-anchor="end" fill="{AXIS}">{_e(fmt(t, 2))}</text>')
    for t in nice_ticks(x0, x1, 8):
        if x0 <= t <= x1:
            parts.append(f'<text x="{px(t):.1f}" y="{top + ph + 16}" text-anchor="middle" '
                         f'fill="{AXIS}">{_e(fmt(int(t) if float(t).is_integer() else t, 1))}'
                         f"</text>")
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" text-anchor="middle" '
                 f'fill="{AXIS}">step</text>')
    if y_label:
        parts.append(f'<text x="14" y="{top + ph / 2:.1f}" text-anchor="middle" fill="{AXIS}" '
                     f'transform="rotate(-90 14 {top + ph / 2:.1f})">{_e(y_label)}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" '
                 f'stroke="{AXIS}" stroke-width="0.8"/>')
    if is_number(hline):
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(hline):.1f}" '
                     f'y2="{py(hline):.1f}" stroke="{AXIS}" stroke-dasharray="3 3"/>'
                     f'<text x="{left + pw - 6}" y="{py(hline) + 15:.1f}" text-anchor="end" '
                     f'fill="{AXIS}">{_e(hline_label)}</text>')
    if is_number(marker_x):
        mx = px(marker_x)
        parts.append(f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{top}" y2="{top + ph}" '
                     f'stroke="#37474f" stroke-dasharray="5 4"/>'
                     f'<text x="{mx + 4:.1f}" y="{top + 12}" fill="#37474f">{_e(marker_label)}</text>')
    for k, s in enumerate(series):
        pts = [(x, v) for x, v in s.points if is_number(x) and is_number(v)]
        if pts:
            d = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in pts)
            parts.append(f'<polyline points="{d}" fill="none" stroke="{s.colour}" '
                         f'stroke-width="2"/>')
            if len(pts) <= 60:
                parts.extend(f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="2.5" '
                             f'fill="{s.colour}"/>' for x, v in pts)
        ly = top + 10 + 20 * k
        parts.append(f'<line x1="{left + pw + 14}" x2="{left + pw + 38}" y1="{ly}" y2="{ly}" '
                     f'stroke="{s.colour}" stroke-width="3"/><text x="{left + pw + 44}" '
                     f'y="{ly + 4}" fill="#263238">{_e(s.name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
