"""Repair benchmark: Pivotal Tuning variants on backdoored ONNX models, real-trigger ASR per step.

    python -m scanner.eval.bench_repair --models fixtures/models/resnet8_badnets.onnx \
        --config '{"unlearn": 0}' --config '{}' --steps 400

Each model needs its recipe sidecar (``.json`` beside it, as ``scan attack`` writes) to know the
attack and target. Trusted data: the shipped 500-image CIFAR-10 sample (80 % tuning, 20 %
held-out, as a scan splits it); the real trigger's ASR and the clean accuracy are measured on
2 000 stratified CIFAR-10 test images (``../shared/data``), which the repair never sees.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    from scanner.attacks import get_attack
    from scanner.attacks.bench import load_subset
    from scanner.classifier import SplitClassifier, predict
    from scanner.defenses.pivotal import PivotalConfig, pivotal_tuning
    from scanner.io.data import load_trusted
    from scanner.io.loader import load_model
    from scanner.ops.metrics import accuracy, attack_success_rate

    ap = argparse.ArgumentParser(prog="python -m scanner.eval.bench_repair", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--trusted", default=str(ROOT / "fixtures" / "cifar10_sample"))
    ap.add_argument("--config", action="append", default=None,
                    help="JSON overrides of PivotalConfig; repeat to compare variants")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, _, xe, ye = load_subset(10, 2000)
    rows = []
    for path in args.models:
        rec = json.loads(Path(path).with_suffix(".json").read_text())["recipe"]
        loaded = load_model(path)
        model = SplitClassifier.from_loaded(loaded).eval()
        data = load_trusted(args.trusted, loaded.spec, loaded.num_classes)
        tune, held = data.split(0.2, seed=args.seed)
        attack = get_attack(rec["attack"], m=max(1, rec["m"]), target=rec["target"],
                            seed=rec["seed"])
        xa = attack.apply(xe)

        def monitor(m):
            return {"asr": attack_success_rate(predict(m, xa), ye, rec["target"]),
                    "cda_test": accuracy(predict(m, xe), ye)}

        for text in args.config or ["{}"]:
            over = {"steps": args.steps, "eval_every": args.eval_every, "seed": args.seed,
                    **json.loads(text)}
            t = time.perf_counter()
            res = pivotal_tuning(model, tune.x, tune.y, held.x, held.y, PivotalConfig(**over),
                                 monitor=monitor)
            wall = time.perf_counter() - t
            print(f"# {Path(path).name} {text}", flush=True)
            for ck in res.trajectory:
                print(f"  step {ck.step:5d} held {ck.cda:.3f} test {ck.extra['cda_test']:.3f} "
                      f"ASR {ck.extra['asr']:.3f}", flush=True)
            p0, kept = res.trajectory[0].extra, monitor(res.model)
            rows.append((Path(path).name, text, p0["cda_test"], p0["asr"], res.best_step,
                         kept["cda_test"], kept["asr"], res.moved, wall))
    print(f"{'model':<22} {'config':<40} {'CDA0':>5} {'ASR0':>5} {'kept':>5} {'CDA':>5} "
          f"{'ASR':>5} {'moved':>5} {'s':>5}")
    for name, text, c0, a0, step, c1, a1, moved, wall in rows:
        print(f"{name:<22} {text:<40} {c0:>5.3f} {a0:>5.3f} {step:>5} {c1:>5.3f} {a1:>5.3f} "
              f"{str(moved):>5} {wall:>5.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
