"""What ``scan eval bench-repair`` prints: issue 4's target per config, and the ASR floor.

The target is issue 4's: real-trigger ASR <= 0.05 with a test-accuracy drop <= 2 points for the
state the repair keeps by its own held-out rule. ``--floor ATTACK`` on clean models measures the
level under which no repair can be expected to go: the trigger's "ASR" on models that never
learnt it.
"""

from __future__ import annotations

from pathlib import Path

import torch

ASR_TARGET, DROP_TARGET = 0.05, 0.02


def meets_target(row: dict) -> bool:
    """The kept state meets issue 4's target; a repair that never moved never does."""
    from scanner.ops.metrics import within_drop

    return (row["moved"] and row["asr_after"] <= ASR_TARGET
            and within_drop(row["cda_after"], row["cda_before"], DROP_TARGET))


def summary_lines(rows: list[dict]) -> list[str]:
    """Per-model table, then per config: how many models meet the target, means, wall time."""
    out = [f"{'model':<28} {'config':<36} {'CDA0':>5} {'ASR0':>5} {'kept':>5} {'CDA':>5} "
           f"{'drop':>5} {'ASR':>5} {'ok':>3} {'s':>5}"]
    for r in sorted(rows, key=lambda r: (r["config"], r["model"])):
        out.append(f"{r['model']:<28} {r['config'][:36]:<36} {r['cda_before']:>5.3f} "
                   f"{r['asr_before']:>5.3f} {r['kept_step']:>5} {r['cda_after']:>5.3f} "
                   f"{100 * r['cda_drop']:>+5.1f} {r['asr_after']:>5.3f} "
                   f"{'yes' if meets_target(r) else 'no':>3} {r['wall_s']:>5.0f}")
    for config in dict.fromkeys(r["config"] for r in rows):
        rs = [r for r in rows if r["config"] == config]
        n = len(rs)
        low = sum(r["moved"] and r["asr_after"] <= ASR_TARGET for r in rs)
        out.append(f"config {config}: {sum(map(meets_target, rs))}/{n} at ASR <= {ASR_TARGET} "
                   f"with test CDA drop <= {100 * DROP_TARGET:.0f} points ({low}/{n} at the ASR "
                   f"alone); mean ASR {sum(r['asr_after'] for r in rs) / n:.3f}, mean drop "
                   f"{100 * sum(r['cda_drop'] for r in rs) / n:+.1f} points, "
                   f"mean {sum(r['wall_s'] for r in rs) / n:.0f} s per repair")
    return out


def floor_rows(paths: list[str], attack: str, seed: int, threads: int) -> list[dict]:
    """The real trigger's "ASR" on models that never saw it, per target class.

    Why: a repaired model cannot be expected to go below what a clean model of the same
    architecture does with the trigger (its errors that happen to land on the target class);
    issue 4's fixed 0.05 sits near that floor for some classes, so the benchmark shows it.
    """
    from scanner.attacks import get_attack
    from scanner.classifier import SplitClassifier, predict
    from scanner.io.loader import load_model
    from scanner.lab.data import benchmark_draw
    from scanner.ops.metrics import accuracy, attack_success_rate

    torch.set_num_threads(threads)
    _, _, xe, ye = benchmark_draw(500, seed)
    rows = []
    for path in paths:
        loaded = load_model(path)
        model = SplitClassifier.from_loaded(loaded).eval()
        row = {"model": Path(path).name, "cda": accuracy(predict(model, xe), ye), "asr": []}
        for t in range(loaded.num_classes):
            xa = get_attack(attack, m=1, target=t, seed=seed).apply(xe)
            row["asr"].append(attack_success_rate(predict(model, xa), ye, t))
        rows.append(row)
    return rows


def floor_lines(rows: list[dict], attack: str) -> list[str]:
    """The floor table: one line per model, then the worst model per target class."""
    k = len(rows[0]["asr"])
    out = [f"{attack} trigger on models that never saw it: share of non-target test images "
           "predicted as the target", f"{'model':<28} {'CDA':>5} " +
           " ".join(f"{'t' + str(t):>5}" for t in range(k))]
    for r in rows:
        out.append(f"{r['model']:<28} {r['cda']:>5.3f} " + " ".join(f"{a:>5.3f}" for a in r["asr"]))
    out.append(f"{'max':<28} {'':>5} " + " ".join(
        f"{max(r['asr'][t] for r in rows):>5.3f}" for t in range(k)))
    return out
