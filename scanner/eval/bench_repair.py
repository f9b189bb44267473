"""Repair benchmark: Pivotal Tuning variants on backdoored ONNX models, side by side in one run.

    python -m scanner.eval.bench_repair --models '.cache/zoo/*/*_badnets_s10[012].onnx' \\
        --config '{}' --config '{"unlearn": 1.0}' --jobs 2 --threads 1

Each model needs its recipe sidecar (``.json`` beside it, as ``scan attack`` writes) to know the
attack and target. Trusted data are drawn exactly as ``bench_detect`` draws them (``--trusted
N`` stratified CIFAR-10 test images, seed ``--seed``, 20 % held out for the Delta rule), so a
config measured here is the repair a scan would run: ``{}`` is ``scan repair``'s default (the
focused repair), ``{"focus": 0.0, "distill": 1.0}`` the calibration repair inside a CTI or ratio
scan (``scanner.defenses.pivotal.CALIBRATION``). ``--trusted DIR`` uses a folder instead
(the shipped 500-image sample was how the first repair figures were made). A config's
``"holdout"`` key is not a PivotalConfig field: it sets the held-out share of the trusted data
(the policy's ``gate.holdout``, 0.2 unless given), so split sizes compare side by side too.
The real trigger's ASR and the clean accuracy are measured on 2 000 further test images the
repair never sees. The loops run in the scan's precision and weight layout (``--precision``,
``--nchw``).

The target is issue 4's: real-trigger ASR <= 0.05 with a test-accuracy drop <= 2 points for the
state the repair keeps by its own held-out rule. The summary counts exactly that per config.
``--floor badnets`` on clean models prints the level under which no repair can be expected to
go: the trigger's "ASR" on models that never learnt it. ``--trajectory K --held-views`` adds,
at every checkpoint, the accuracy over eight fixed views of the held-out images (as they are,
mirrored, six shifts): whether a less noisy estimate of the drop is to be had from the same
images.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
ASR_TARGET, DROP_TARGET = 0.05, 0.02


def _repair_one(path: str, config: str, trusted: str, steps: int | None, seed: int,
                threads: int, precision: str, nchw: bool, trajectory: int,
                held_views: bool = False) -> dict:
    """One model under one config: the row ``--out`` records (runs in a worker with ``--jobs``)."""
    from scanner.attacks import get_attack
    from scanner.budget import get_budget
    from scanner.classifier import SplitClassifier, predict
    from scanner.defenses.pivotal import PivotalConfig, pivotal_tuning
    from scanner.eval.bench_detect import _trusted_and_eval
    from scanner.io.data import TrustedData, load_trusted
    from scanner.io.loader import load_model
    from scanner.ops.metrics import accuracy, attack_success_rate
    from scanner.ops.precision import Compute, resolve_precision, to_fast_layout

    torch.set_num_threads(threads)
    device = torch.device("cpu")
    rec = json.loads(Path(path).with_suffix(".json").read_text())["recipe"]
    loaded = load_model(path)
    model = SplitClassifier.from_loaded(loaded).eval()
    if trusted.isdigit():
        xt, yt, xe, ye = _trusted_and_eval(int(trusted), seed)
        data = TrustedData(xt, yt)
    else:
        from scanner.attacks.bench import load_subset

        data = load_trusted(trusted, loaded.spec, loaded.num_classes)
        _, _, xe, ye = load_subset(10, 2000)
    precision = resolve_precision(precision, device)
    fast_layout = not nchw and to_fast_layout(model, data.x[:8])
    holdout, over = parse_config(config)
    tune, held = data.split(holdout, seed=seed)
    attack = get_attack(rec["attack"], m=max(1, rec["m"]), target=rec["target"], seed=rec["seed"])
    xa = attack.apply(xe)

    budget = get_budget("cpu", "standard")
    over = {"steps": steps or budget.repair_steps, "batch_size": budget.repair_batch,
            "seed": seed, **({"eval_every": trajectory} if trajectory else {}), **over}
    cfg = PivotalConfig.for_device(device, **over)
    xv, yv = (fixed_views(held.x), held.y.repeat(8)) if held_views else (None, None)

    def measure(m) -> dict:
        return {"asr": attack_success_rate(predict(m, xa), ye, rec["target"]),
                "cda_test": accuracy(predict(m, xe), ye),
                **({"held_views": accuracy(predict(m, xv), yv)} if held_views else {})}

    t = time.perf_counter()
    with Compute(device, precision).loops():
        res = pivotal_tuning(model, tune.x, tune.y, held.x, held.y, cfg, device=device,
                             monitor=measure if trajectory else None)
    wall = time.perf_counter() - t
    before, after = measure(model), measure(res.model)
    return {"model": Path(path).name, "config": config, "target": rec["target"],
            "asr_before": before["asr"], "cda_before": before["cda_test"],
            "asr_after": after["asr"], "cda_after": after["cda_test"],
            "cda_drop": before["cda_test"] - after["cda_test"], "kept_step": res.best_step,
            "held_drop": res.cda_drop,
            "held_drop_se": None if math.isnan(res.cda_drop_se) else res.cda_drop_se,
            "holdout": holdout, "held_images": len(held), "moved": res.moved, "wall_s": wall,
            "precision": precision, "channels_last": fast_layout, "steps": cfg.steps,
            "focus_class": res.info.get("focus_class"),
            "trajectory": [{"step": c.step, "held": c.cda, **c.extra} for c in res.trajectory]}


def fixed_views(x: torch.Tensor, shift: int = 2) -> torch.Tensor:
    """Eight views of each image, stacked view by view: as is, mirrored, and shifted by
    ``shift`` pixels (reflect padding) to six fixed offsets."""
    h, w = x.shape[-2:]
    xp = torch.nn.functional.pad(x, (shift,) * 4, mode="reflect")
    offsets = ((0, 0), (0, 2 * shift), (2 * shift, 0), (2 * shift, 2 * shift), (shift, 0),
               (0, shift))
    return torch.cat([x, x.flip(-1)] + [xp[..., i:i + h, j:j + w] for i, j in offsets])


def parse_config(config: str) -> tuple[float, dict]:
    """(held-out share, PivotalConfig overrides) of one ``--config`` JSON text.

    Why here: the held-out share is a property of the trusted-data split, not of the repair's
    config, yet it is what a side-by-side comparison of split sizes varies.
    """
    over = json.loads(config)
    if not isinstance(over, dict):
        raise ValueError(f"--config must be a JSON object, got {config!r}")
    holdout = float(over.pop("holdout", 0.2))
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    return holdout, over


def floor_rows(paths: list[str], attack: str, seed: int, threads: int) -> list[dict]:
    """The real trigger's "ASR" on models that never saw it, per target class.

    Why: a repaired model cannot be expected to go below what a clean model of the same
    architecture does with the trigger (its errors that happen to land on the target class);
    issue 4's fixed 0.05 sits near that floor for some classes, so the benchmark shows it.
    """
    from scanner.attacks import get_attack
    from scanner.classifier import SplitClassifier, predict
    from scanner.eval.bench_detect import _trusted_and_eval
    from scanner.io.loader import load_model
    from scanner.ops.metrics import accuracy, attack_success_rate

    torch.set_num_threads(threads)
    _, _, xe, ye = _trusted_and_eval(500, seed)
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
    k = len(rows[0]["asr"])
    out = [f"{attack} trigger on models that never saw it: share of non-target test images "
           "predicted as the target", f"{'model':<28} {'CDA':>5} " +
           " ".join(f"{'t' + str(t):>5}" for t in range(k))]
    for r in rows:
        out.append(f"{r['model']:<28} {r['cda']:>5.3f} " + " ".join(f"{a:>5.3f}" for a in r["asr"]))
    out.append(f"{'max':<28} {'':>5} " + " ".join(
        f"{max(r['asr'][t] for r in rows):>5.3f}" for t in range(k)))
    return out


def meets_target(row: dict) -> bool:
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


def main(argv: list[str] | None = None) -> int:
    from scanner.eval.jobs import append_row, find_models, read_rows, run_jobs
    from scanner.ops.precision import PRECISIONS

    ap = argparse.ArgumentParser(prog="python -m scanner.eval.bench_repair", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=None,
                    help="ONNX files or glob patterns (required unless --summarize)")
    ap.add_argument("--trusted", default="500",
                    help="N: N stratified CIFAR-10 test images (as bench_detect); or a folder")
    ap.add_argument("--config", action="append", default=None,
                    help="JSON overrides of PivotalConfig (and \"holdout\": the held-out share); "
                         "repeat to compare variants")
    ap.add_argument("--steps", type=int, default=None,
                    help="repair steps (default: the CPU standard budget's, as a scan)")
    ap.add_argument("--trajectory", type=int, default=0, metavar="K",
                    help="also measure test ASR/CDA every K steps (slower); 0: kept state only")
    ap.add_argument("--held-views", action="store_true",
                    help="with --trajectory: also the accuracy over 8 fixed views of the "
                         "held-out images per checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=1, help="repairs at once, one process each")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", default="auto", choices=PRECISIONS)
    ap.add_argument("--nchw", action="store_true", help="keep NCHW weights (a scan uses "
                                                        "channels_last on CPU)")
    ap.add_argument("--out", default=None, help="append per-run JSON lines here")
    ap.add_argument("--summarize", default=None, metavar="JSONL",
                    help="run nothing: print the summary of rows written by --out")
    ap.add_argument("--floor", default=None, metavar="ATTACK",
                    help="repair nothing: measure ATTACK's trigger (e.g. badnets) for every "
                         "target class on --models (clean ones): the ASR no repair goes below")
    args = ap.parse_args(argv)
    if args.summarize:
        rows = read_rows(args.summarize, key=lambda r: (r["model"], r["config"]))
        print("\n".join(summary_lines(rows)))
        return 0
    if not args.models:
        ap.error("--models is required (unless --summarize)")
    if args.held_views and not args.trajectory:
        ap.error("--held-views needs --trajectory K")
    try:
        paths = find_models(args.models, args.jobs, args.threads)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    if args.floor:
        print("\n".join(floor_lines(floor_rows(paths, args.floor, args.seed, args.threads),
                                    args.floor)))
        return 0
    configs = args.config or ["{}"]
    try:
        for c in configs:
            parse_config(c)  # fail before any work on a typo
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    job = dict(trusted=args.trusted, steps=args.steps, seed=args.seed, threads=args.threads,
               precision=args.precision, nchw=args.nchw, trajectory=args.trajectory,
               held_views=args.held_views)
    work = [(p, c) for c in configs for p in paths]
    t0 = time.perf_counter()
    rows = []

    def record(row: dict) -> None:
        rows.append(row)
        print(f"{row['model']} {row['config']}: ASR {row['asr_before']:.3f} -> "
              f"{row['asr_after']:.3f}, CDA drop {100 * row['cda_drop']:+.1f} points, "
              f"{row['wall_s']:.0f} s", file=sys.stderr, flush=True)
        append_row(args.out, row)

    run_jobs(functools.partial(_repair_one, **job), work, args.jobs, record)
    print("\n".join(summary_lines(rows)))
    print(f"{len(work)} repairs, {args.jobs} job(s) x {args.threads} thread(s), precision "
          f"{args.precision}: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
