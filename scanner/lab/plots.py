"""PNG figures from a games results file (matplotlib, imported only here and only when called).

- :func:`tradeoff_plots` (paper Fig. 6): per attack and r, the ASR (x) / clean accuracy (y)
  trade-off of each defense (and each m) along its repair checkpoints, averaged over seeds by
  step; a star marks η, the dashed line the Δ floor below the unrepaired model's accuracy.
- :func:`detectability_plots` (paper Fig. 5): per attack, ASR and detectability (ROC AUC per
  detector) against the number of poisoned samples m, with shaded ± one std (ASR: over models;
  AUC: bootstrap over models).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from scanner.errors import InputError
from scanner.lab.metrics import auc_with_uncertainty, mean_std


def pyplot():
    """matplotlib's pyplot on the Agg backend, or an InputError that says how to install it.

    Public so that ``scan eval plots`` can fail before reading any rows.
    """
    try:
        import matplotlib
    except ImportError:
        raise InputError("plots need matplotlib, which is not installed",
                         hint="pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _slug(*parts) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(str(p) for p in parts)).strip("_")


def _r_label(r: float) -> str:
    return f"{r * 100:g}%" if r < 1 else f"{int(r)} images"


def _save(plt, fig, ax, path: Path, dpi: int) -> Path:
    """Grid, legend, tight layout; write ``path`` and free the figure (many panels per run)."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _mean_curve(runs: list[list[dict]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean ASR and CDA per checkpoint step over runs (steps present in every run)."""
    steps = sorted(set.intersection(*(set(c["step"] for c in t) for t in runs)))
    asr = np.array([np.mean([next(c["asr"] for c in t if c["step"] == s) for t in runs])
                    for s in steps])
    cda = np.array([np.mean([next(c["test_cda"] for c in t if c["step"] == s) for t in runs])
                    for s in steps])
    return np.array(steps), asr, cda


def tradeoff_plots(rows: list[dict], out_dir: str | Path, *, dpi: int = 120) -> list[Path]:
    """One PNG per (setting, attack, r): ASR vs CDA curves per (defense, m). Returns the paths."""
    rob = [r for r in rows if r.get("game") == "robustness" and r.get("trajectory")]
    if not rob:
        return []
    plt = pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    panels = defaultdict(list)
    for r in rob:
        panels[(r["setting"], r["attack"], r["r"])].append(r)
    paths = []
    for (setting, attack, rr), prow in panels.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        curves = defaultdict(list)
        for r in prow:
            curves[(r["defense"], r["m"])].append(r)
        multi_m = len({m for _, m in curves}) > 1
        floors = []
        for i, ((defense, m), runs) in enumerate(sorted(curves.items())):
            steps, asr, cda = _mean_curve([r["trajectory"] for r in runs])
            label = defense + (f" m={m}" if multi_m else "")
            color = f"C{i % 10}"
            ax.plot(asr, cda, "-o", ms=3, lw=1.5, color=color, label=label)
            eta = mean_std(r["eta"] for r in runs)[0]
            eta_cda = mean_std(r["eta_cda"] for r in runs)[0]
            ax.plot([eta], [eta_cda], marker="*", ms=13, color=color, mec="black", mew=0.6)
            floors.append(cda[0] - runs[0]["delta"])
        if floors:
            ax.axhline(float(np.mean(floors)), ls="--", lw=1, color="gray",
                       label="unrepaired CDA − Δ")
        ax.set_xlabel("attack success rate (ASR)")
        ax.set_ylabel("clean data accuracy (CDA, test)")
        ax.set_xlim(-0.03, 1.03)
        ax.set_title(f"{attack}: repair trade-off, r = {_r_label(rr)}\n{setting}  (★ = η)",
                     fontsize=10)
        name = f"tradeoff_{_slug(attack, 'r' + format(rr, 'g'), setting)}.png"
        paths.append(_save(plt, fig, ax, out_dir / name, dpi))
    return paths


def detectability_plots(rows: list[dict], out_dir: str | Path, *, dpi: int = 120,
                        n_boot: int = 500) -> list[Path]:
    """One PNG per (setting, attack): ASR and AUC per detector against m. Returns the paths."""
    det = [r for r in rows if r.get("game") == "detectability"]
    pois = [r for r in det if r["label"]]
    if not pois:
        return []
    plt = pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for setting, attack in sorted({(r["setting"], r["attack"]) for r in pois}):
        group = [r for r in pois if r["setting"] == setting and r["attack"] == attack]
        clean = [r for r in det if not r["label"] and r["setting"] == setting]
        ms = sorted({r["m"] for r in group})
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        asr = [mean_std({r["recipe_key"]: r["asr"] for r in group if r["m"] == m}.values())
               for m in ms]
        a_mean = np.array([a[0] for a in asr])
        a_std = np.array([a[1] for a in asr])
        ax.plot(ms, a_mean, "-o", color="black", lw=2, label="ASR")
        ax.fill_between(ms, np.clip(a_mean - a_std, 0, 1), np.clip(a_mean + a_std, 0, 1),
                        color="black", alpha=0.15)
        for i, d in enumerate(sorted({r["detector"] for r in group})):
            pts = []
            for m in ms:
                p = [r["score"] for r in group if r["m"] == m and r["detector"] == d
                     and r.get("score") is not None]
                n = [r["score"] for r in clean if r["detector"] == d and r.get("score") is not None]
                if p and n:
                    a = auc_with_uncertainty(p + n, [1] * len(p) + [0] * len(n), n_boot=n_boot)
                    pts.append((m, a["auc"], a["std"]))
            if not pts:
                continue
            x, y, s = (np.array(v) for v in zip(*pts))
            color = f"C{i % 10}"
            ax.plot(x, y, ":o", color=color, lw=2, label=f"detectability ({d}, ROC AUC)")
            ax.fill_between(x, np.clip(y - s, 0, 1), np.clip(y + s, 0, 1), color=color, alpha=0.15)
        ax.axhline(0.5, ls="--", lw=0.8, color="gray")
        ax.set_xscale("log" if len(ms) >= 2 and ms[-1] / max(ms[0], 1) >= 10 else "linear")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("poisoned samples m")
        ax.set_ylabel("ASR / ROC AUC")
        ax.set_title(f"{attack}: effectiveness and detectability\n{setting}", fontsize=10)
        name = f"detectability_{_slug(attack, setting)}.png"
        paths.append(_save(plt, fig, ax, out_dir / name, dpi))
    return paths
