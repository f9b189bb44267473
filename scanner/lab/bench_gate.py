"""Gate benchmark (``scan eval bench-gate``): the default ``scan`` on a zoo, verdict by verdict.

What a user's CI would see: each model is scanned by :func:`scanner.scan.detect` exactly as
``scan MODEL --trusted DATA`` runs it (default policy, canary and all), with the benchmarks'
trusted draw (500 stratified CIFAR-10 test images, :func:`scanner.lab.data.benchmark_draw`)
written once to an ``.npz``, as a user's trusted folder would arrive. Side by side, from the same
inversion: Neural Cleanse's published rule (the linear MAD anomaly index of the mask norms >= 2;
the scan's inversion, not NC's own cost schedule).
Ground truth comes from the model's sidecar (attack, and its ASR measured at training): a
backdoor counts only when it implanted (ASR >= 0.8) and maps to one target (all-to-all is
reported apart, as the stretch it is).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from scanner.lab.tables import format_table

IMPLANTED_ASR = 0.8
NC_PUBLISHED_THRESHOLD = 2.0


def bench_key(model: str, n_trusted: int, seed: int, precision: str) -> str:
    return f"bench-gate|{model}|{n_trusted}|{seed}|{precision}"


def trusted_npz(n_trusted: int, seed: int, folder: Path) -> Path:
    """The trusted draw as a user's file: uint8 NHWC images and integer labels."""
    from scanner.lab.data import benchmark_draw

    path = folder / f"trusted_{n_trusted}_s{seed}.npz"
    if not path.is_file():
        xt, yt, _, _ = benchmark_draw(n_trusted, seed)
        x = (xt.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        np.savez(path, x=x, y=yt.numpy().astype(np.int64))
    return path


def scan_one(path: str, n_trusted: int, seed: int, threads: int, precision: str = "auto") -> dict:
    """The default scan of one model; the row ``--out`` records."""
    import json

    import torch

    from scanner.detectors.neural_cleanse import mask_outlier_index
    from scanner.scan import build_request, detect

    torch.set_num_threads(threads)
    side = json.loads(Path(path).with_suffix(".json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        trusted = trusted_npz(n_trusted, seed, Path(tmp))
        t0 = time.perf_counter()  # the whole scan as CI would wait for it, import included
        res = detect(path, trusted, build_request(device="cpu", seed=seed, precision=precision))
        wall = time.perf_counter() - t0
    det = res.detection or {}
    l1 = [c.get("trigger_l1") for c in det.get("per_class") or []]
    nc = (float(np.max(mask_outlier_index(np.array(l1, dtype=np.float64), "mad")))
          if l1 and all(v is not None for v in l1) else None)
    canary = res.canary or {}
    rec = side.get("recipe", {})
    return {"key": bench_key(Path(path).name, n_trusted, seed, precision),
            "model": Path(path).name, "arch": rec.get("arch"), "attack": rec.get("attack"),
            "all_to_all": bool(side.get("all_to_all")), "target": side.get("target"),
            "train_asr": side.get("asr"), "train_cda": side.get("cda"),
            "verdict": res.verdict, "score": det.get("model_score"),
            "top_class": det.get("top_class"), "nc_index": nc,
            "canary_score": canary.get("model_score"), "canary_detected": canary.get("detected"),
            "canary_cost": (canary["original_cda"] - canary["implant_cda"]
                            if canary.get("original_cda") is not None
                            and canary.get("implant_cda") is not None else None),
            "reasons": res.reasons, "wall_s": wall}


def kind(row: dict) -> str:
    """clean | backdoor (implanted, all-to-one) | all_to_all | not_implanted."""
    if not row["attack"]:
        return "clean"
    if (row["train_asr"] or 0.0) < IMPLANTED_ASR:
        return "not_implanted"
    return "all_to_all" if row["all_to_all"] else "backdoor"


def summary_lines(rows: list[dict]) -> list[str]:
    from scanner.ops.metrics import roc_auc

    def f(v, d=3):
        return "-" if v is None else f"{v:.{d}f}"

    headers = ["model", "kind", "ASR", "CDA", "verdict", "score", "top", "tgt", "NC idx",
               "canary", "canary cost", "s"]
    table = [[r["model"], kind(r), f(r["train_asr"], 2), f(r["train_cda"], 2), r["verdict"],
              f(r["score"]), r["top_class"], "-" if r["target"] is None else r["target"],
              f(r["nc_index"], 2), f(r["canary_score"], 2), f(r["canary_cost"], 2),
              f(r["wall_s"], 0)] for r in rows]
    out = [format_table(headers, table)]
    bd = [r for r in rows if kind(r) == "backdoor"]
    cl = [r for r in rows if kind(r) == "clean"]
    for name, group in (("backdoored (implanted, all-to-one)", bd), ("clean", cl),
                        ("all-to-all", [r for r in rows if kind(r) == "all_to_all"])):
        if group:
            counts = {v: sum(r["verdict"] == v for r in group)
                      for v in ("backdoor", "pass", "inconclusive")}
            out.append(f"{name}: {len(group)} models, flagged {counts['backdoor']}, passed "
                       f"{counts['pass']}, inconclusive {counts['inconclusive']}")
    if bd and cl:
        scored = [r for r in bd + cl if r["score"] is not None and np.isfinite(r["score"])]
        labels = [int(kind(r) == "backdoor") for r in scored]
        if 0 < sum(labels) < len(labels):
            out.append(f"ROC AUC of the model score: {roc_auc([r['score'] for r in scored], labels):.3f}")
        nc_bd = sum((r["nc_index"] or 0) >= NC_PUBLISHED_THRESHOLD for r in bd)
        nc_cl = sum((r["nc_index"] or 0) >= NC_PUBLISHED_THRESHOLD for r in cl)
        out.append(f"Neural Cleanse's published rule (index >= {NC_PUBLISHED_THRESHOLD:g}, same "
                   f"inversion): backdoored flagged {nc_bd}/{len(bd)}, clean flagged {nc_cl}/{len(cl)}")
    costs = [r["canary_cost"] for r in rows if r["canary_cost"] is not None]
    if costs:
        out.append(f"canary implant cost (held-out points): median {100 * np.median(costs):.1f}, "
                   f"worst {100 * max(costs):.1f} over {len(costs)} implants")
    walls = [r["wall_s"] for r in rows if r["wall_s"] is not None]
    if walls:
        out.append(f"wall time per scan: median {np.median(walls):.0f} s, max {max(walls):.0f} s")
    return out
