"""Detection benchmark: scan a zoo of clean and backdoored ONNX models with CTI and Neural Cleanse.

    python -m scanner.eval.bench_detect [--models DIR_OR_GLOB ...] [--trusted 500] [--budget standard]

Each model is read exactly as a user's file would be (ONNX import, BN folded). Trusted data: the
first N images of a fixed class-stratified draw from the CIFAR-10 *test* split; the real-trigger
ASR is measured on 2 000 other test images with the attack recorded in the model's sidecar JSON
(the scanner itself never sees it). Prints per-model scores, both ROC AUCs, wall times, and the
real-trigger ASR before and after Pivotal Tuning. That repair is the one inside the scan (CTI's
calibration: unfocused, ``scanner.defenses.pivotal.CALIBRATION``); ``scanner.eval.bench_repair``
measures ``scan repair``'s default, the focused one.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch


@lru_cache(maxsize=2)  # a worker scans several models on the same data
def _trusted_and_eval(n_trusted: int, seed: int = 0):
    from scanner.io.cifar import load_cifar10, to_tensor

    x, y = load_cifar10("test")
    g = np.random.default_rng(seed)
    order = np.concatenate([g.permutation(np.flatnonzero(y == c)) for c in range(10)])
    per = n_trusted // 10
    trusted = np.concatenate([order[c * 1000: c * 1000 + per] for c in range(10)])
    rest = np.setdiff1d(np.arange(len(y)), trusted)
    ev = g.choice(rest, 2000, replace=False)
    return (to_tensor(x[trusted]), torch.from_numpy(y[trusted]), to_tensor(x[ev]),
            torch.from_numpy(y[ev]))


def _print_table(rows: list[dict], methods: list[str]) -> None:
    """Per-model scores, wall times and repair ASR, then one ROC AUC per score."""
    from scanner.eval.tables import format_table
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
    print(format_table(headers, table))
    labels = [int(r["backdoored"]) for r in rows]
    if 0 < sum(labels) < len(labels):
        for m in scores:
            print(f"ROC AUC {m}: {roc_auc([r[m + '_score'] for r in rows], labels):.3f}")
    for m in scores:
        print(_flag_counts(rows, m))
    stuck = [r["model"] for r in rows if r.get("repair_moved") is False]
    if stuck:  # the scan itself would be inconclusive there: the calibration had no repaired copy
        print(f"repair found no state within the accuracy budget (a scan would be inconclusive): "
              f"{', '.join(stuck)}")
    bd = [r for r in rows if r["backdoored"] and "asr_after" in r]
    if bd:
        low = [r for r in bd if r["asr_after"] <= 0.05]
        line = f"repair: {len(low)}/{len(bd)} backdoored models at real-trigger ASR <= 0.05"
        if all("cda_drop_eval" in r for r in bd):
            both = sum(within_drop(-r["cda_drop_eval"], 0.0, 0.02) for r in low)
            line += f", {both}/{len(bd)} also with a test CDA drop <= 2 points"
        print(line + " (the repair inside the scan, CTI's unfocused calibration: the last of "
                     "--methods that repairs; bench_repair measures scan repair's default)")


def _flag_counts(rows: list[dict], score: str) -> str:
    """How a score's default gate threshold splits the rows (the policy's values; cti_max: 0.5)."""
    from scanner.pipeline import ScanSettings

    s = ScanSettings()
    thr = {"nc": s.nc_threshold, "mask": s.mask_threshold, "cti": s.cti_threshold,
           "ratio": s.ratio_threshold, "cti_max": 0.5}[score]
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


def _scan_one(path: str, methods: list[str], budget_level: str, n_trusted: int, seed: int,
              threads: int, precision: str = "auto", nchw: bool = False) -> dict:
    """One model, every method: the row ``--out`` records (runs in a worker with ``--jobs``)."""
    from scanner.attacks import get_attack
    from scanner.budget import get_budget
    from scanner.classifier import SplitClassifier, predict
    from scanner.io.data import TrustedData
    from scanner.io.loader import load_model
    from scanner.ops.metrics import accuracy, attack_success_rate
    from scanner.ops.precision import resolve_precision, to_fast_layout
    from scanner.pipeline import ScanSettings, run_detection

    torch.set_num_threads(threads)
    xt, yt, xe, ye = _trusted_and_eval(n_trusted, seed)
    budget = get_budget("cpu", budget_level)
    side = json.loads(Path(path).with_suffix(".json").read_text())
    rec = side["recipe"]
    loaded = load_model(path)
    model = SplitClassifier.from_loaded(loaded).eval()
    precision = resolve_precision(precision, torch.device("cpu"))
    fast_layout = not nchw and to_fast_layout(model, xt[:8])  # as a scan does
    tune, held = TrustedData(xt, yt).split(0.2, seed=seed)
    attack = get_attack(rec["attack"] or "badnets", m=1, target=rec["target"])
    asr0 = attack_success_rate(predict(model, attack.apply(xe)), ye, rec["target"])
    cda0 = accuracy(predict(model, xe), ye)  # the repair's accuracy cost, on images it never saw
    row = {"model": Path(path).name, "backdoored": bool(rec["attack"]), "target": rec["target"],
           "arch": rec["arch"], "cda": side["cda"], "asr_before": asr0, "budget": budget_level,
           "cda_eval": cda0, "precision": precision, "channels_last": fast_layout}
    for method in methods:
        t = time.perf_counter()
        det, rep = run_detection(model, tune, held, 10, ScanSettings(method=method, seed=seed,
                                                                 precision=precision),
                                 budget, torch.device("cpu"))
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


def main(argv: list[str] | None = None) -> int:
    from scanner.eval.jobs import append_row, find_models, read_rows, run_jobs
    from scanner.ops.precision import PRECISIONS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=[".cache/zoo/*/*.onnx"])
    ap.add_argument("--trusted", type=int, default=500)
    ap.add_argument("--budget", default="standard")
    ap.add_argument("--methods", default="nc,cti",
                    help="nc runs the inversion once and reports both NC's MAD and the log-MAD 'mask' score")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per model being scanned")
    ap.add_argument("--jobs", type=int, default=1,
                    help="models scanned at once, each in its own process with --threads threads "
                         "(on 2 cores: --jobs 2 --threads 1 scans a zoo in about half the time; the "
                         "per-model wall times are then those of a loaded machine)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", default="auto", choices=PRECISIONS,
                    help="as scan --precision (the models run channels_last as in a scan)")
    ap.add_argument("--nchw", action="store_true",
                    help="keep the models' NCHW weight layout (a scan uses channels_last on CPU); "
                         "with --precision fp32 this is how the results before session 7 were made")
    ap.add_argument("--out", default=None, help="write per-model JSON lines here")
    ap.add_argument("--summarize", default=None, metavar="JSONL",
                    help="scan nothing: print the table and ROC AUCs of rows written by --out "
                         "(e.g. several runs over parts of a zoo appending to one file)")
    args = ap.parse_args(argv)
    methods = args.methods.split(",")
    if args.summarize:
        rows = read_rows(args.summarize, key=lambda r: r["model"])  # a rerun replaces a row
        _print_table(sorted(rows, key=lambda r: r["model"]), methods)
        return 0
    try:
        paths = find_models(args.models, args.jobs, args.threads)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    job = dict(methods=methods, budget_level=args.budget, n_trusted=args.trusted,
               seed=args.seed, threads=args.threads, precision=args.precision, nchw=args.nchw)
    t0 = time.perf_counter()
    rows = []

    def record(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        append_row(args.out, row)

    run_jobs(functools.partial(_scan_one, **job), [(p,) for p in paths], args.jobs, record)
    _print_table(sorted(rows, key=lambda r: r["model"]), methods)
    print(f"{len(rows)} models, {args.jobs} job(s) x {args.threads} thread(s), budget "
          f"{args.budget}, precision {args.precision}: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
