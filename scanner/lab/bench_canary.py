"""Canary benchmark (``scan eval bench-canary``): what the implant costs each model.

The canary must stay a working copy of the model (issue: within 5 points of clean accuracy on
every model), or a scan of it proves nothing about the model. Each model is read as a user's
file would be; the implant runs as a scan runs it (trusted draw, held-out split, seed, budget's
step cap); its cost is measured on 2 000 CIFAR-10 test images the implant never saw
(:func:`scanner.lab.data.benchmark_draw`), with the held-out estimate the implant itself used.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from scanner.lab.tables import format_table


def bench_key(model: str, n_trusted: int, seed: int, precision: str) -> str:
    return f"bench-canary|{model}|{n_trusted}|{seed}|{precision}"


def implant_one(path: str, n_trusted: int, seed: int, threads: int,
                precision: str = "auto") -> dict:
    """Implant the canary into one model; the row ``--out`` records."""
    from scanner.classifier import SplitClassifier, predict
    from scanner.io.data import TrustedData
    from scanner.io.loader import load_model
    from scanner.lab.data import benchmark_draw
    from scanner.ops.metrics import accuracy, attack_success_rate
    from scanner.ops.precision import resolve_precision, to_fast_layout
    from scanner.scan import (CanaryConfig, TrustedSplit, build_request, canary_patch,
                              implant_canary, stamp_canary)
    from scanner.scan.detect_job import loops

    torch.set_num_threads(threads)
    xt, yt, xe, ye = benchmark_draw(n_trusted, seed)
    model = SplitClassifier.from_loaded(load_model(path)).eval()
    resolved = resolve_precision(precision, torch.device("cpu"))
    to_fast_layout(model, xt[:8])  # as a scan does
    split = TrustedSplit(*TrustedData(xt, yt).split(0.2, seed=seed))
    request = build_request(device="cpu", seed=seed, precision=resolved)
    cfg = CanaryConfig(steps=request.budget.canary_steps, seed=seed)
    cda0 = accuracy(predict(model, xe), ye)
    t = time.perf_counter()
    with loops(request):
        imp = implant_canary(model, split, 10, cfg)
    wall = time.perf_counter() - t
    patch, _ = canary_patch(tuple(xe.shape[1:]), cfg.patch_frac, cfg.seed)
    return {"key": bench_key(Path(path).name, n_trusted, seed, precision),
            "model": Path(path).name, "precision": resolved, "ok": imp.ok, "steps": imp.steps,
            "backoffs": imp.backoffs, "held_cda_before": imp.pivot_cda, "held_cda_after": imp.cda,
            "cda_before": cda0, "cda_after": accuracy(predict(imp.model, xe), ye),
            "asr": attack_success_rate(predict(imp.model, stamp_canary(xe, patch)), ye,
                                       imp.target),
            "wall_s": wall, "notes": imp.notes}


def summary_lines(rows: list[dict], max_drop: float = 0.05) -> list[str]:
    headers = ["model", "ok", "steps", "backoffs", "held CDA", "test CDA", "dCDA", "ASR", "s"]
    table = [[r["model"], "yes" if r["ok"] else "NO", r["steps"], r["backoffs"],
              f"{r['held_cda_before']:.2f}->{r['held_cda_after']:.2f}",
              f"{r['cda_before']:.3f}->{r['cda_after']:.3f}",
              f"{100 * (r['cda_after'] - r['cda_before']):+.1f}", f"{r['asr']:.2f}",
              f"{r['wall_s']:.0f}"] for r in rows]
    drops = [r["cda_before"] - r["cda_after"] for r in rows]
    within = sum(d <= max_drop + 1e-9 for d in drops)
    out = [format_table(headers, table)]
    if rows:
        out.append(f"implant taken on {sum(r['ok'] for r in rows)}/{len(rows)} models; test "
                   f"accuracy within {100 * max_drop:.0f} points on {within}/{len(rows)}; "
                   f"largest drop {100 * max(drops):.1f} points")
    return out
