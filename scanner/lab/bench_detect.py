"""Detection benchmark (``scan eval bench-detect``): scan a zoo of clean and backdoored ONNX
models with the product's detectors and print scores, ROC AUCs, wall times and repair ASR.

Each model is read exactly as a user's file would be (ONNX import, BN folded) and scanned by
``scanner.scan.run_detection`` with a request built as ``scan`` builds one. Trusted data: the
first N images of a fixed class-stratified draw from the CIFAR-10 *test* split; the real-trigger
ASR is measured on 2 000 other test images with the attack recorded in the model's sidecar JSON
(the scanner itself never sees it; :func:`scanner.lab.data.benchmark_draw`). The repair whose
ASR is reported is the one inside the scan (CTI's calibration, unfocused);
``scan eval bench-repair`` measures ``scan repair``'s default, the focused one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from scanner.lab.tables import format_table


def bench_key(model: str, methods: list[str], budget: str, n_trusted: int, seed: int,
              precision: str, nchw: bool) -> str:
    """A benchmark row's resume key: the model file and every setting that changes its row."""
    return (f"bench-detect|{model}|{','.join(methods)}|{budget}|{n_trusted}|{seed}|{precision}"
            f"|{'nchw' if nchw else 'auto-layout'}")


def scan_one(path: str, methods: list[str], budget_level: str, n_trusted: int, seed: int,
             threads: int, precision: str = "auto", nchw: bool = False) -> dict:
    """One model, every method: the row ``--out`` records (runs in a worker with ``--jobs``)."""
    from scanner.attacks import get_attack
    from scanner.classifier import SplitClassifier, predict
    from scanner.io.data import TrustedData
    from scanner.io.loader import load_model
    from scanner.lab.data import benchmark_draw
    from scanner.ops.metrics import accuracy, attack_success_rate
    from scanner.ops.precision import resolve_precision, to_fast_layout
    from scanner.scan import TrustedSplit, build_request, run_detection

    torch.set_num_threads(threads)
    xt, yt, xe, ye = benchmark_draw(n_trusted, seed)
    side = json.loads(Path(path).with_suffix(".json").read_text())
    rec = side["recipe"]
    model = SplitClassifier.from_loaded(load_model(path)).eval()
    resolved = resolve_precision(precision, torch.device("cpu"))
    fast_layout = not nchw and to_fast_layout(model, xt[:8])  # as a scan does
    split = TrustedSplit(*TrustedData(xt, yt).split(0.2, seed=seed))
    request = build_request(device="cpu", seed=seed, budget_level=budget_level,
                            precision=resolved)
    attack = get_attack(rec["attack"] or "badnets", m=1, target=rec["target"])
    asr0 = attack_success_rate(predict(model, attack.apply(xe)), ye, rec["target"])
    cda0 = accuracy(predict(model, xe), ye)  # the repair's accuracy cost, on images it never saw
    row = {"key": bench_key(Path(path).name, methods, budget_level, n_trusted, seed, precision,
                            nchw),
           "model": Path(path).name, "backdoored": bool(rec["attack"]), "target": rec["target"],
           "arch": rec["arch"], "cda": side["cda"], "asr_before": asr0, "budget": budget_level,
           "cda_eval": cda0, "precision": resolved, "channels_last": fast_layout}
    for method in methods:
        t = time.perf_counter()
        det, rep = run_detection(model, split, 10, request.with_method(method))
        row[f"{method}_score"] = det.model_score
        row[f"{method}_top"] = det.top_class
        if method == "nc":  # the scanner's log-MAD statistic from the same inversion
            row["mask_score"] = max(det.extra["index_log_mad"])
            row["l1"] = [round(s.trigger_l1, 2) for s in det.per_class]
        row[f"{method}_s"] = time.perf_counter() - t
        if method == "cti":  # the paper's max_c gap_c rule, from the same run
            row["cti_max_score"] = max(det.extra["gap"])
            row["cti_l1"] = [round(s.trigger_l1, 2) for s in det.per_class]
            row["cti_gap"] = [round(v, 3) for v in det.extra["gap"]]
        if "log_ratio" in det.extra:
            row["log_ratio"] = [round(v, 3) for v in det.extra["log_ratio"]]
        if rep is not None:  # cti and ratio each run their own repair: keep each one's
            asr = attack_success_rate(predict(rep.model, attack.apply(xe)), ye, rec["target"])
            row[f"{method}_asr_after"] = asr
            row["asr_after"] = asr
            row["cda_drop_eval"] = cda0 - accuracy(predict(rep.model, xe), ye)
            row[f"{method}_cda_drop_heldout"] = rep.cda_drop
            row["repair_moved"] = rep.moved
    return row


def summary_lines(rows: list[dict], methods: list[str]) -> list[str]:
    """Per-model scores, wall times and repair ASR, then one ROC AUC per score."""
    from scanner.ops.metrics import roc_auc, within_drop

    methods = [m for m in methods if all(m + "_score" in r for r in rows)]
    scores = methods + (["mask"] if "nc" in methods else [])  # nc's inversion also gives mask
    if "cti" in methods and all("cti_max_score" in r for r in rows):
        scores.append("cti_max")  # the paper's max-gap rule, from the same CTI run
    headers = ["model", "bd", "tgt", "CDA", "ASR0"]
    headers += [f"{m}_{c}" for m in methods for c in ("score", "top", "s")]
    headers += (["mask_score"] if "nc" in methods else []) + ["ASR_rep", "dCDA_rep"]
    table = []
    for r in rows:
        cells = [r["model"], int(r["backdoored"]), r["target"] if r["backdoored"] else "-",
                 f"{r['cda']:.3f}", f"{r['asr_before']:.3f}"]
        for m in methods:
            cells += [f"{r[m + '_score']:.3f}", r[m + "_top"], f"{r[m + '_s']:.0f}"]
        if "nc" in methods:
            cells.append(f"{r['mask_score']:.3f}")
        cells.append(f"{r.get('asr_after', float('nan')):.3f}")
        cells.append(f"{r.get('cda_drop_eval', float('nan')):+.3f}")  # 2 000 test images
        table.append(cells)
    out = [format_table(headers, table)]
    labels = [int(r["backdoored"]) for r in rows]
    if 0 < sum(labels) < len(labels):
        for m in scores:
            out.append(f"ROC AUC {m}: {roc_auc([r[m + '_score'] for r in rows], labels):.3f}")
    out += [flag_counts(rows, m) for m in scores]
    stuck = [r["model"] for r in rows if r.get("repair_moved") is False]
    if stuck:  # the scan itself would be inconclusive there: the calibration had no repaired copy
        out.append("repair found no state within the accuracy budget (a scan would be "
                   f"inconclusive): {', '.join(stuck)}")
    bd = [r for r in rows if r["backdoored"] and "asr_after" in r]
    if bd:
        low = [r for r in bd if r["asr_after"] <= 0.05]
        line = f"repair: {len(low)}/{len(bd)} backdoored models at real-trigger ASR <= 0.05"
        if all("cda_drop_eval" in r for r in bd):
            both = sum(within_drop(-r["cda_drop_eval"], 0.0, 0.02) for r in low)
            line += f", {both}/{len(bd)} also with a test CDA drop <= 2 points"
        out.append(line + " (the repair inside the scan, CTI's unfocused calibration: the last "
                          "of --methods that repairs; bench-repair measures scan repair's default)")
    return out


def flag_counts(rows: list[dict], score: str) -> str:
    """How a score's default gate threshold splits the rows (the policy's values; cti_max: 0.5)."""
    from scanner.scan import build_request

    thr = {**build_request().thresholds, "cti_max": 0.5}[score]
    # mask and NC rank the same inversion's L1s (log is monotonic), so NC's top class is mask's
    top = {"mask": "nc_top", "cti_max": "cti_top"}.get(score, score + "_top")
    bd = [r for r in rows if r["backdoored"]]
    cl = [r for r in rows if not r["backdoored"]]
    hit = [r for r in bd if r[score + "_score"] >= thr]
    named = sum(r.get(top) == r["target"] for r in hit) if score != "cti_max" else None
    fa = sum(r[score + "_score"] >= thr for r in cl)
    name = "" if named is None else f" ({named} at the target)"
    return (f"{score} >= {thr:g}: backdoored flagged {len(hit)}/{len(bd)}{name}, "
            f"clean flagged {fa}/{len(cl)}")
