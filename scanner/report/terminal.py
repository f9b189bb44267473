"""Human-readable terminal rendering (Rich) of result objects."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from scanner.scan.results import InspectResult, ScanResult


def render_inspect(res: InspectResult, console: Console) -> None:
    s = res.spec
    t = Table(title=f"Model: {res.model}", show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    t.add_row("format", res.format + (f" (opset {res.onnx_opset})" if res.onnx_opset else "")
              + (f", arch {res.arch}" if res.arch else ""))
    t.add_row("sha256", res.sha256)
    t.add_row("classes", str(res.num_classes)
              + (f": {', '.join(res.class_names[:10])}" if res.class_names else ""))
    t.add_row("input", f"{s['input_name']}: {s['layout']} {s['channels']}x{s['height']}x{s['width']} "
              f"{s['dtype']}, values {s['value_range'][0]:g}..{s['value_range'][1]:g}"
              + (f", fixed batch {s['fixed_batch']}" if s.get("fixed_batch") else ", dynamic batch"))
    if s.get("graph_mean") is not None:
        t.add_row("normalisation", "in graph: mean=" + _fmt(s["graph_mean"]) + " std=" + _fmt(s["graph_std"]))
    elif s.get("mean") is not None or s.get("std") is not None:
        t.add_row("normalisation", "applied by scanner: mean=" + _fmt(s.get("mean")) + " std=" + _fmt(s.get("std")))
    else:
        t.add_row("normalisation", "none found in graph, none given (inputs taken as is)")
    t.add_row("spec sources", ", ".join(f"{k}: {v}" for k, v in s.get("sources", {}).items()))
    t.add_row("batchnorm", "present" if res.has_batchnorm else "none (folded into conv)")
    if res.op_histogram:
        t.add_row("ops", ", ".join(f"{k}x{v}" for k, v in res.op_histogram.items()))
    t.add_row("unsupported ops", ", ".join(res.unsupported_ops) or "none")
    for note in res.import_notes:
        t.add_row("import", note)
    if res.parity:
        p = res.parity
        t.add_row("parity", f"{'OK' if p['passed'] else 'FAILED'}: max |delta| {p['max_abs_diff']:.2g} "
                  f"at logit scale {p['logit_scale']:.3g} vs onnxruntime")
    if res.trusted:
        tr = res.trusted
        t.add_row("trusted data", f"{tr['images']} images from {tr['source']}")
        for note in tr["notes"]:
            t.add_row("data", note)
        t.add_row("clean accuracy", f"{tr['clean_accuracy']:.3f} on the trusted data")
    console.print(t)


def _print_notes(console: Console, model: dict | None, trusted: dict | None) -> None:
    """What the loader converted, model side then data side.

    Why always shown: each conversion (layout, colour, size, class map) can make a clean model
    look broken or hide a trigger; a reviewer of a verdict must be able to see them.
    """
    for note in (model or {}).get("import_notes") or []:
        console.print(f"  model: {note}", highlight=False)
    for note in (trusted or {}).get("notes") or []:
        console.print(f"  data: {note}", highlight=False)


def _per_class_table(det: dict, names: list[str]) -> Table:
    """Per-class scores; the "ASR repaired" column only when some class has a value.

    Why: methods without a repair (mask, nc) leave it empty, and a column of dashes reads as
    "the repair failed everywhere".
    """
    rows = det["per_class"]
    repaired = any(s.get("asr_tuned") is not None for s in rows)
    t = Table(title=f"{det['method']} per-class scores (model score {det['model_score']:.3f})",
              title_justify="left")
    cols = ["class", "score", "ASR suspect"] + (["ASR repaired"] if repaired else []) \
        + ["trigger L1", "flag"]
    for col in cols:
        t.add_column(col, justify="right" if col != "class" else "left")
    for s in rows:
        name = f"{s['cls']} {names[s['cls']]}" if s["cls"] < len(names) else str(s["cls"])
        cells = [name, f"{s['score']:.3f}", f"{s['asr_pivot']:.2f}"]
        if repaired:
            cells.append("-" if s.get("asr_tuned") is None else f"{s['asr_tuned']:.2f}")
        cells += [f"{s['trigger_l1']:.1f}", "FLAG" if s["cls"] in det["flagged"] else ""]
        t.add_row(*cells)
    return t


def _fmt(v) -> str:
    return "-" if v is None else "(" + ", ".join(f"{x:.4g}" for x in v) + ")"


_VERDICT_STYLE = {"pass": "bold green", "backdoor": "bold red", "inconclusive": "bold yellow"}


def render_scan(res: ScanResult, console: Console) -> None:
    style = _VERDICT_STYLE.get(res.verdict, "bold")
    console.print(f"[{style}]verdict: {res.verdict.upper()}[/]  {res.model['path']}")
    for r in res.reasons:
        console.print(f"  - {r}", highlight=False)
    console.print(f"  sha256 {res.model['sha256']}; {res.trusted['images']} trusted images, clean "
                  f"accuracy {res.trusted['clean_accuracy']:.3f}", highlight=False)
    _print_notes(console, res.model, res.trusted)
    det = res.detection
    if det:
        console.print(_per_class_table(det, res.model.get("class_names") or []))
    if res.repair:
        r = res.repair
        console.print(f"  repair: held-out accuracy {r['pivot_cda']:.3f} -> {r['best_cda']:.3f} "
                      f"(step {r['best_step']}), moved={r['moved']}", highlight=False)
    if res.canary:
        c = res.canary
        console.print(f"  canary: implanted={c['implanted']} (ASR {c['implant_asr']:.2f}), "
                      f"detected={c['detected']}"
                      + (f" score {c['model_score']:.3f}" if "model_score" in c else ""),
                      highlight=False)
    tm = ", ".join(f"{k} {v:.1f}" for k, v in res.timings.items())
    console.print(f"  timings (s): {tm}; budget {res.request.budget_level} on {res.request.device}"
                  f", {res.request.precision} loops"
                  + (", canary beside the detection" if res.run.get("canary_parallel") else ""),
                  highlight=False)


_STATUS_STYLE = {"repaired": "bold green", "not-repaired": "bold yellow",
                 "inconclusive": "bold yellow"}


def render_repair(res, console: Console) -> None:
    """Summary of ``scan repair``: what changed, where it was written, what the re-scan saw."""
    console.print(f"[{_STATUS_STYLE.get(res.status, 'bold')}]repair: {res.status.upper()}[/]  "
                  f"{res.model['path']} ({res.defense})")
    for r in res.reasons:
        console.print(f"  - {r}", highlight=False)
    _print_notes(console, res.model, res.trusted)
    if res.repair:
        r = res.repair
        console.print(f"  held-out clean accuracy {r['pivot_cda']:.3f} -> {r['best_cda']:.3f} "
                      f"(drop {r['cda_drop']:.3f}, step {r['best_step']}), parameter distance "
                      f"{r['param_distance']:.3g}", highlight=False)
        for note in r.get("notes") or []:  # which class the unlearning focused on, and from what
            console.print(f"  note: {note}", highlight=False)
    if res.output:
        o = res.output
        console.print(f"  wrote {o['path']} ({o['format']}, sha256 {o['sha256'][:16]}...): "
                      f"{o['verified']}", highlight=False)
    if res.rescan:
        rs = res.rescan
        console.print(f"  re-scan ({rs['method']}): model score {rs['model_score']:.3f}, "
                      f"{'still suspected' if rs['still_suspected'] else 'not flagged'}",
                      highlight=False)
    tm = ", ".join(f"{k} {v:.1f}" for k, v in res.timings.items())
    console.print(f"  timings (s): {tm}", highlight=False)
