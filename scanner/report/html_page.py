"""The page frame of the HTML report: inline stylesheet, a locked-down head, and the encoders.

Why self-contained: the report travels as a CI artifact, an e-mail attachment or a ticket
upload and must render offline and in sandboxed viewers (no JavaScript, no external fonts,
styles or images): the CSS is inline, images are data URIs and the Content-Security-Policy
allows nothing else. Why separate: the stylesheet and the document shell change for other
reasons than the report's sections (:mod:`scanner.report.html` and
:mod:`scanner.report.html_triggers`), which share :func:`esc` and :func:`data_uri` from here.
"""

from __future__ import annotations

import base64
import html

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


def esc(x) -> str:
    """``x`` as text, HTML-escaped (quotes too): result strings come from untrusted files."""
    return html.escape(str(x), quote=True)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def page(title: str, body: str) -> str:
    """The whole HTML document: ``title`` is escaped here, ``body`` must already be HTML."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n")
