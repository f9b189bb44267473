"""Paper-shaped tables from a games results file (JSONL, see :mod:`scanner.lab.rows`).

- :func:`table2`: per (attack, m): CDA, ASR and detectability ROC AUC per detector (paper Table 2),
  with a "No backdoor" row for the clean models. AUC cells read ``0.76 ± 0.05`` (± = bootstrap
  standard error over models, see :func:`scanner.lab.metrics.auc_with_uncertainty`).
- :func:`table3`: remaining ASR η per attack × defense × r (paper Table 3, data efficiency v_r).

Both render as aligned text or as a Markdown table.
"""

from __future__ import annotations

import math
from collections import defaultdict

from scanner.lab.metrics import auc_with_uncertainty, mean_std


def _order(values) -> list:
    seen: dict = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def _num(v: float, digits: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _pm(mean: float, std: float, n: int, digits: int = 2) -> str:
    if n == 0 or math.isnan(mean):
        return "-"
    return _num(mean, digits) + (f" ± {std:.{digits}f}" if n > 1 else "")


def _r_label(r: float) -> str:
    return f"{r * 100:g}%" if r < 1 else f"{int(r)}"


def format_table(headers: list[str], rows: list[list[str]], *, markdown: bool = False,
                 title: str | None = None) -> str:
    """Aligned plain text (first column left, others right) or a GitHub Markdown table."""
    rows = [[str(c) for c in r] for r in rows]
    out = []
    if markdown:
        if title:
            out += [f"**{title}**", ""]
        out.append("| " + " | ".join(headers) + " |")
        out.append("|" + "|".join([" --- "] + [" ---: "] * (len(headers) - 1)) + "|")
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    if title:
        out.append(title)
    out.append(line(headers))
    out.append("  ".join("-" * w for w in widths))
    out += [line(r) for r in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------- Table 2


def table2_data(rows: list[dict], n_boot: int = 1000) -> tuple[list[str], list[dict]]:
    """(detector columns, one dict per table row) from detectability (and robustness) rows."""
    det = [r for r in rows if r.get("game") == "detectability"]
    rob = [r for r in rows if r.get("game") == "robustness"]
    col_keys = _order((r["detector"], r["r"]) for r in det)
    by_det = defaultdict(set)
    for d, rr in col_keys:
        by_det[d].add(rr)
    labels = {k: (k[0] if len(by_det[k[0]]) == 1 else f"{k[0]} r={_r_label(k[1])}") for k in col_keys}
    out: list[dict] = []
    settings = _order(r["setting"] for r in det + rob)
    multi = len(settings) > 1
    for setting in settings:
        srows = [r for r in det if r["setting"] == setting]
        clean = [r for r in srows if not r["label"]]
        models = {r["recipe_key"]: r for r in clean}
        if models:
            cda = mean_std(r["cda"] for r in models.values())
            out.append({"setting": setting if multi else "", "attack": "No backdoor", "m": 0,
                        "cda": cda, "asr": (float("nan"), float("nan"), 0),
                        "n_models": len(models), "auc": {labels[k]: None for k in col_keys}})
        groups = _order((r["attack"], r["m"]) for r in srows if r["label"])
        groups += [g for g in _order((r["attack"], r["m"]) for r in rob if r["setting"] == setting)
                   if g not in groups]
        order = _order(a for a, _ in groups)
        groups.sort(key=lambda g: (order.index(g[0]), g[1]))
        for attack, m in groups:
            pois = [r for r in srows if r["label"] and r["attack"] == attack and r["m"] == m]
            models = {r["recipe_key"]: r for r in pois}
            if models:
                cda = mean_std(r["cda"] for r in models.values())
                asr = mean_std(r["asr"] for r in models.values())
            else:  # only robustness rows: the unrepaired model's numbers
                rb = {r["recipe_key"]: r for r in rob if r["setting"] == setting
                      and r["attack"] == attack and r["m"] == m}
                models = rb
                cda = mean_std(r["pivot_cda"] for r in rb.values())
                asr = mean_std(r["pivot_asr"] for r in rb.values())
            aucs = {}
            for k in col_keys:
                d, rr = k
                p = [r["score"] for r in pois if r["detector"] == d and r["r"] == rr
                     and r.get("score") is not None]
                n = [r["score"] for r in clean if r["detector"] == d and r["r"] == rr
                     and r.get("score") is not None]
                aucs[labels[k]] = auc_with_uncertainty(p + n, [1] * len(p) + [0] * len(n),
                                                       n_boot=n_boot) if p and n else None
            out.append({"setting": setting if multi else "", "attack": attack, "m": m, "cda": cda,
                        "asr": asr, "n_models": len(models), "auc": aucs})
    return [labels[k] for k in col_keys], out


def table2(rows: list[dict], *, markdown: bool = False, n_boot: int = 1000) -> str:
    """Table 2 shape: attack, m, CDA, ASR, detectability (ROC AUC) per detector."""
    cols, data = table2_data(rows, n_boot=n_boot)
    if not data:
        return "(no detectability or robustness rows)"
    multi = any(d["setting"] for d in data)
    headers = (["setting"] if multi else []) + ["attack", "m", "models", "CDA", "ASR"] + \
        [f"AUC {c}" for c in cols]
    body = []
    for d in data:
        cells = ([d["setting"]] if multi else []) + [d["attack"], str(d["m"]), str(d["n_models"]),
                                                     _pm(*d["cda"], digits=3), _pm(*d["asr"])]
        for c in cols:
            a = d["auc"].get(c)
            cells.append("-" if a is None else _pm(a["auc"], a["std"], a["n_pos"] + a["n_neg"]))
        body.append(cells)
    title = ("Table 2: clean accuracy, attack success and detectability (ROC AUC over clean vs. "
             "backdoored models; ± = bootstrap std over models)")
    return format_table(headers, body, markdown=markdown, title=title)


# --------------------------------------------------------------------------- Table 3


def table3_data(rows: list[dict], metric: str = "eta") -> tuple[list[tuple[str, float]], list[dict]]:
    rob = [r for r in rows if r.get("game") == "robustness"]
    cols = _order((r["defense"], r["r"]) for r in rob)
    defs = _order(c[0] for c in cols)
    cols = sorted(cols, key=lambda c: (defs.index(c[0]), c[1]))
    out = []
    settings = _order(r["setting"] for r in rob)
    multi = len(settings) > 1
    for setting in settings:
        srows = [r for r in rob if r["setting"] == setting]
        attacks = _order(r["attack"] for r in srows)
        for attack, m in sorted(_order((r["attack"], r["m"]) for r in srows),
                                key=lambda g: (attacks.index(g[0]), g[1])):
            g = [r for r in srows if r["attack"] == attack and r["m"] == m]
            cells = {c: mean_std(r.get(metric) for r in g if (r["defense"], r["r"]) == c)
                     for c in cols}
            pivot = mean_std({r["recipe_key"]: r["pivot_asr"] for r in g}.values())
            out.append({"setting": setting if multi else "", "attack": attack, "m": m,
                        "asr_before": pivot, "cells": cells,
                        "delta": sorted({r["delta"] for r in g})})
    return cols, out


def table3(rows: list[dict], *, markdown: bool = False, metric: str = "eta") -> str:
    """Table 3 shape: remaining ASR after each defense (columns defense × r), per attack."""
    cols, data = table3_data(rows, metric)
    if not data:
        return "(no robustness rows)"
    multi = any(d["setting"] for d in data)
    headers = (["setting"] if multi else []) + ["attack", "m", "ASR before"] + \
        [f"{d} v{_r_label(r)}" for d, r in cols]
    body = []
    for d in data:
        cells = ([d["setting"]] if multi else []) + [d["attack"], str(d["m"]),
                                                     _pm(*d["asr_before"])]
        cells += [_pm(*d["cells"][c]) for c in cols]
        body.append(cells)
    deltas = sorted({x for d in data for x in d["delta"]})
    what = ("eta = lowest ASR with test CDA drop <= Delta" if metric == "eta" else
            "ASR of the state each defense keeps by its own held-out Delta rule")
    title = (f"Table 3: remaining ASR after repair ({what}; Delta = "
             f"{', '.join(f'{x:g}' for x in deltas)}; v_r: r trusted images as a share of the "
             "training set; mean ± std over seeds)")
    return format_table(headers, body, markdown=markdown, title=title)
