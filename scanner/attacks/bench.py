"""Train a clean model and one poisoned model per attack on a CIFAR-10 subset; print CDA / ASR.

Why: a cheap end-to-end check that each attack actually implants a backdoor with the trainer as
configured (the failure mode this catches is a trigger that never takes, e.g. stamped before
augmentation). Not a test: it needs ``../shared/data/cifar10`` and minutes of CPU.

    python -m scanner.attacks.bench --arch resnet20 --epochs 10 --train-size 10000 \
        --attacks badnets,wanet --rate 0.01

The ``clean`` row is a model trained without poison; its ASR column is measured with the first
attack's trigger, and every row's ``ASR@clean`` is the same trigger on the clean model (what a
trigger achieves without a backdoor, e.g. by adversarial transfer).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from scanner.attacks import get_attack, train_model
from scanner.attacks.train import attack_success_rate, evaluate
from scanner.errors import InputError


def load_subset(train_size: int, test_size: int) -> tuple[torch.Tensor, ...]:
    """The first ``train_size`` training images (the shards are already shuffled) and a
    class-stratified ``test_size`` slice of the test set (which is sorted by class)."""
    from scanner.io.cifar import decode_jpeg_npz, shared_cifar10_dir, to_tensor

    root = shared_cifar10_dir()
    if root is None:
        raise InputError("CIFAR-10 archive not found (expected ../shared/data/cifar10)")
    xs, ys, need = [], [], train_size
    for k in range(5):
        if need <= 0:
            break
        x, y = decode_jpeg_npz(root / f"train_{k}.npz", limit=need)
        xs.append(x)
        ys.append(y)
        need -= len(y)
    x_tr, y_tr = np.concatenate(xs), np.concatenate(ys)
    step = max(1, 10_000 // test_size)
    x_te, y_te = decode_jpeg_npz(root / "test.npz", indices=np.arange(0, 10_000, step)[:test_size])
    return (to_tensor(x_tr), torch.from_numpy(y_tr), to_tensor(x_te), torch.from_numpy(y_te))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scanner.attacks.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--train-size", type=int, default=10_000)
    ap.add_argument("--test-size", type=int, default=2_000)
    ap.add_argument("--attacks", default="badnets", help="comma-separated attack names")
    ap.add_argument("--rate", type=float, default=0.01, help="m = rate * train size (when no --m)")
    ap.add_argument("--m", type=int, default=None, help="poisoned samples per attack")
    ap.add_argument("--no-clean", action="store_true", help="skip the clean reference model")
    ap.add_argument("--target", type=int, default=0)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (keep low on shared machines)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    names = [a.strip() for a in args.attacks.split(",") if a.strip()]
    m = args.m if args.m is not None else max(1, round(args.rate * args.train_size))
    attacks = [get_attack(n, m=m, target=args.target, seed=args.seed) for n in names]

    t0 = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_subset(args.train_size, args.test_size)
    print(f"data: {len(y_tr)} train / {len(y_te)} test images in {time.perf_counter() - t0:.1f}s, "
          f"{args.arch}, {args.epochs} epochs, {args.threads} thread(s)", file=sys.stderr)

    def log(name: str):
        def progress(epoch: int, epochs: int, rec: dict) -> None:
            print(f"  [{name}] epoch {epoch}/{epochs} loss {rec['loss']:.3f} "
                  f"train_acc {rec['train_acc']:.3f} {rec['seconds']:.1f}s", file=sys.stderr)
        return progress

    common = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                  device=args.device, num_classes=10)
    rows = []
    clean_model = None
    header = f"{'attack':<16} {'m':>6} {'CDA':>6} {'ASR':>6} {'ASR@clean':>9} {'wall s':>7}"

    def emit(row: tuple) -> None:
        # Each row as soon as it exists (flushed), so a long run that dies keeps its results.
        rows.append(row)
        name, mm, cda, asr, base, wall = row
        print(f"row: {name:<16} {mm:>6} {cda:>6.3f} {asr:>6.3f} {base:>9.3f} {wall:>7.1f}",
              file=sys.stderr, flush=True)

    if not args.no_clean:
        t = time.perf_counter()
        clean_model, _ = train_model(args.arch, x_tr, y_tr, progress=log("clean"), **common)
        wall = time.perf_counter() - t
        cda = evaluate(clean_model, x_te, y_te)
        asr = attack_success_rate(clean_model, attacks[0], x_te, y_te) if attacks else float("nan")
        emit(("clean", 0, cda, asr, float("nan"), wall))
    for attack in attacks:
        t = time.perf_counter()
        model, _ = train_model(args.arch, x_tr, y_tr, attack=attack, progress=log(attack.name),
                               **common)
        wall = time.perf_counter() - t
        cda = evaluate(model, x_te, y_te)
        asr = attack_success_rate(model, attack, x_te, y_te)
        base = (attack_success_rate(clean_model, attack, x_te, y_te)
                if clean_model is not None else float("nan"))
        emit((attack.name, attack.config.m, cda, asr, base, wall))

    print(header)
    for name, mm, cda, asr, base, wall in rows:
        print(f"{name:<16} {mm:>6} {cda:>6.3f} {asr:>6.3f} {base:>9.3f} {wall:>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
