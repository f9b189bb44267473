"""Human-readable terminal rendering (Rich) of result objects."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from scanner.pipeline import InspectResult


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
            t.add_row("", note)
        t.add_row("clean accuracy", f"{tr['clean_accuracy']:.3f} on the trusted data")
    console.print(t)


def _fmt(v) -> str:
    return "-" if v is None else "(" + ", ".join(f"{x:.4g}" for x in v) + ")"
