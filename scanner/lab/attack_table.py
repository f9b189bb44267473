"""Attack table (``scan eval attack-table``): train a clean model and one poisoned model per
attack on a CIFAR-10 subset; print CDA / ASR.

Why: a cheap end-to-end check that each attack actually implants a backdoor with the trainer as
configured (the failure mode this catches is a trigger that never takes, e.g. stamped before
augmentation). Not a test: it needs ``../shared/data/cifar10`` and minutes of CPU.

The ``clean`` row is a model trained without poison; its ASR column is measured with the first
attack's trigger, and every row's ``ASR@clean`` is the same trigger on the clean model (what a
trigger achieves without a backdoor, e.g. by adversarial transfer).
"""

from __future__ import annotations

import os
import time
from typing import Callable

import torch

from scanner.attacks import attack_success_rate, evaluate, get_attack, train_model
from scanner.attacks.train import load_subset
from scanner.lab.zoo import ZooSpec

HEADER = f"{'attack':<16} {'m':>6} {'CDA':>6} {'ASR':>6} {'ASR@clean':>9} {'wall s':>7}"


def row_line(row: tuple) -> str:
    """One table row as printed at the end and logged while the run goes."""
    name, mm, cda, asr, base, wall = row
    return f"{name:<16} {mm:>6} {cda:>6.3f} {asr:>6.3f} {base:>9.3f} {wall:>7.1f}"


def attack_table(spec: ZooSpec, names: list[str], m: int, clean: bool, *, test_size: int,
                 seed: int, threads: int, device: str,
                 log: Callable[[str], None]) -> list[tuple]:
    """Train every model as ``spec`` says (its ``target`` for every attack) and measure it on
    ``test_size`` test images; each row goes to ``log`` (``row: ...``) as soon as it exists, so a
    long run that dies keeps its results. Returns (name, m, CDA, ASR, ASR@clean, wall s) rows."""
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    attacks = [get_attack(n, m=m, target=spec.target, seed=seed) for n in names]
    t0 = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_subset(spec.train_size, test_size)
    log(f"data: {len(y_tr)} train / {len(y_te)} test images in {time.perf_counter() - t0:.1f}s, "
        f"{spec.arch}, {spec.epochs} epochs, {threads} thread(s)")

    def progress(name: str):
        def report(epoch: int, epochs: int, rec: dict) -> None:
            log(f"  [{name}] epoch {epoch}/{epochs} loss {rec['loss']:.3f} "
                f"train_acc {rec['train_acc']:.3f} {rec['seconds']:.1f}s")
        return report

    common = dict(epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr, seed=seed,
                  device=device, num_classes=10)
    rows: list[tuple] = []

    def emit(row: tuple) -> None:
        rows.append(row)
        log("row: " + row_line(row))

    clean_model = None
    if clean:
        t = time.perf_counter()
        clean_model, _ = train_model(spec.arch, x_tr, y_tr, progress=progress("clean"), **common)
        wall = time.perf_counter() - t
        asr = (attack_success_rate(clean_model, attacks[0], x_te, y_te) if attacks
               else float("nan"))
        emit(("clean", 0, evaluate(clean_model, x_te, y_te), asr, float("nan"), wall))
    for attack in attacks:
        t = time.perf_counter()
        model, _ = train_model(spec.arch, x_tr, y_tr, attack=attack, progress=progress(attack.name),
                               **common)
        wall = time.perf_counter() - t
        base = (attack_success_rate(clean_model, attack, x_te, y_te)
                if clean_model is not None else float("nan"))
        emit((attack.name, attack.config.m, evaluate(model, x_te, y_te),
              attack_success_rate(model, attack, x_te, y_te), base, wall))
    return rows
