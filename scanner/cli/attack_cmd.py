"""``scan attack``: train a (poisoned) model to test a gate with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from scanner.cli.app import app
from scanner.cli.console import stderr_console
from scanner.cli.options import DeviceOpt, QuietOpt, SeedOpt


@app.command("attack")
def attack_cmd(
    name: Optional[str] = typer.Argument(None, help="Attack: " + "badnets, cbadnets, adaptive_patch, adaptive_blend, adv_clean_label, refool, wanet, tsb, pcb, or 'clean' for an unpoisoned twin."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write the trained model (.onnx; a .json sidecar goes beside it)."),
    data: str = typer.Option("cifar10", "--data", help="'cifar10' (../shared/data/cifar10 or $SCAN_CIFAR10_DIR) or your labelled data: folder, CSV or npz (split 80/20 into train/test)."),
    arch: str = typer.Option("resnet20", "--arch", help="Architecture to train (see `scan inspect --list-archs`)."),
    m: Optional[int] = typer.Option(None, "--m", help="Number of poisoned training samples (default: --rate x training set)."),
    rate: float = typer.Option(0.01, "--rate", help="Poisoning rate when --m is not given."),
    target: int = typer.Option(0, "--target", help="Target class of the backdoor."),
    param: list[str] = typer.Option([], "--param", help="Attack parameter NAME=VALUE (repeatable), e.g. --param alpha=0.2."),
    epochs: int = typer.Option(10, "--epochs", help="Training epochs (SGD, cosine schedule)."),
    train_size: int = typer.Option(20_000, "--train-size", help="Training images used (at most)."),
    lr: float = typer.Option(0.1, "--lr", help="Peak learning rate."),
    batch_size: int = typer.Option(128, "--batch-size", help="Training batch size."),
    num_classes: int = typer.Option(10, "--num-classes", help="Classes of your own --data."),
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
    list_all: bool = typer.Option(False, "--list", help="List the attacks with their parameters and exit."),
    quiet: bool = QuietOpt,
) -> None:
    """Train a (poisoned) model to test your gate with: writes ONNX + a JSON sidecar (CDA, ASR).

    Examples:\n
      scan attack badnets --out badnets.onnx --rate 0.01 --epochs 20\n
      scan attack wanet --data my_data/ --num-classes 5 --out wanet.onnx\n
      scan attack clean --out clean.onnx --seed 1\n
      scan attack --list
    """
    import dataclasses

    from scanner.attacks import attack_class, list_attacks
    from scanner.attacks.recipe import (ModelRecipe, build_model_from_recipe, load_attack_data,
                                        parse_attack_params)
    from scanner.device import resolve_device
    from scanner.errors import InputError

    if list_all:
        for n in list_attacks():
            cls = attack_class(n)
            knobs = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.Config)
                              if f.name not in ("target", "m", "seed")
                              and f.default is not dataclasses.MISSING)
            typer.echo(f"{n:16s} {'clean-label' if cls.clean_label else 'poison-label':12s} {knobs}")
        return
    if name is None or out is None:
        raise InputError("scan attack needs an attack NAME and --out", hint="scan attack badnets --out m.onnx")
    name = name.lower().replace("-", "_")
    if name != "clean" and name not in list_attacks():
        raise InputError(f"unknown attack {name!r}", hint="known: clean, " + ", ".join(list_attacks()))
    if out.suffix.lower() != ".onnx":
        raise InputError(f"--out must end in .onnx, got {out.name!r}")
    if out.exists() and not force:
        raise InputError(f"{out} exists; not overwriting it", hint="pass --force to replace it")
    if not 0.0 < rate < 1.0:
        raise InputError(f"--rate must be in (0, 1), got {rate}")
    dev = resolve_device(device)
    log = (lambda msg: None) if quiet else (lambda msg: stderr_console().print(msg, highlight=False))
    data_t, class_names, label = load_attack_data(data, train_size=train_size,
                                                  num_classes=num_classes, seed=seed)
    n_train = len(data_t[1])
    n_poison = m if m is not None else max(1, round(rate * n_train))
    recipe = ModelRecipe(name=out.stem, arch=arch, attack=None if name == "clean" else name,
                         attack_params=parse_attack_params(param), m=0 if name == "clean" else n_poison,
                         target=target, train_size=n_train, epochs=epochs, lr=lr,
                         batch_size=batch_size, seed=seed, dataset=label)
    log(f"training {arch} on {n_train} images ({label}), "
        + ("clean" if name == "clean" else f"{name} m={n_poison} target={target}")
        + f", {epochs} epochs on {dev}")
    path = build_model_from_recipe(recipe, out.parent, device=str(dev), data=data_t,
                                   out_path=out, class_names=class_names, log=log)
    side = json.loads(path.with_suffix(".json").read_text())
    asr = "-" if side["asr"] is None else f"{side['asr']:.3f}"
    typer.echo(f"{path}: CDA {side['cda']:.3f}, ASR {asr} on {side['test_images']} test images "
               f"({side['train_seconds']:.0f}s)")
