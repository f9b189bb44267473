"""``scan eval search``: tune a defense by self-poisoning and write a policy (paper Sec. 5.3)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from scanner.errors import InputError
from scanner.lab.app import (DeltaOpt, DeviceOpt, HoldoutOpt, QuietOpt, ThreadsOpt, eval_app,
                             make_log, results_path, setup_device)


@eval_app.command("search", short_help="Tune a defense by self-poisoning (Sec. 5.3); write a policy TOML.")
def search_cmd(
    trusted: Path = typer.Option(..., "--trusted", help="Trusted data: folder of class folders, CSV path,label, or npz x,y (as for `scan`)."),
    model: Path = typer.Option(..., "--model", help="The model whose defense knobs are tuned (ONNX, or safetensors with --arch)."),
    out: Path = typer.Option(Path("rules/searched.toml"), "--out", help="Policy TOML to write ([repair] defense and max_cda_drop; the chosen knobs as [repair.params], which `scan repair --config` uses)."),
    defense: str = typer.Option("pivotal", "--defense", help="Defense to tune: pivotal, fine_pruning, nad, weight_decay, nc_repair."),
    grid: list[str] = typer.Option([], "--grid", help="A knob and its values NAME=V1,V2 (repeatable), e.g. --grid lr=1e-3,1e-2 --grid lambda_p=2000,20000. Default: a small lr x knob grid per defense."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Repair steps per grid point (default: the defense's)."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Checkpoint interval (default: the defense's)."),
    max_cda_drop: float = DeltaOpt,
    eval_frac: float = typer.Option(0.2, "--eval-frac", help="Share of the trusted data kept aside to measure clean accuracy and the implanted trigger's ASR."),
    holdout: float = HoldoutOpt,
    canary_steps: Optional[int] = typer.Option(None, "--canary-steps", help="Fine-tuning steps of the self-poisoning implant (default 300)."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Architecture of a safetensors --model."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Class names file, one per line (line i = class i)."),
    min_per_class: int = typer.Option(5, "--min-per-class", help="Minimum trusted images per class."),
    results: Optional[Path] = typer.Option(None, "--results", help="Also append every grid point as a row to this JSONL file."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data split, the implant and the repairs."),
    device: str = DeviceOpt,
    threads: Optional[int] = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Tune a defense by self-poisoning (paper Sec. 5.3) and write a policy for `scan repair`.

    A known patch backdoor is implanted into a copy of --model using the trusted data; each grid
    point repairs that copy and is scored by eta (lowest remaining ASR of the known trigger with
    clean accuracy within --max-cda-drop). The best point is written to --out.

    Examples:\n
      scan eval search --trusted trusted/ --model model.onnx --defense pivotal --out rules/searched.toml\n
      scan eval search --trusted data.npz --model m.safetensors --arch resnet20 --defense weight_decay --grid lr=3e-4,1e-3 --grid weight_decay=1e-3,1e-2\n
      scan --config rules/searched.toml repair model.onnx --trusted trusted/ --out fixed.onnx
    """
    from scanner.classifier import SplitClassifier
    from scanner.defenses.registry import get_defense
    from scanner.io.data import load_trusted
    from scanner.io.loader import load_model
    from scanner.lab.parsing import parse_grid
    from scanner.lab.rows import RowStore
    from scanner.lab.search import self_poison_search
    from scanner.lab.search_policy import write_policy

    log = make_log(quiet)
    dev = setup_device(device, threads)
    get_defense(defense)
    if out.exists() and not force:
        raise InputError(f"{out} exists; not overwriting it", hint="pass --force to replace it")
    if out.suffix.lower() != ".toml":
        raise InputError(f"--out must be a .toml file, got {out.name!r}")
    store = RowStore(results_path(results, "--results")) if results is not None else None
    g = parse_grid(grid) if grid else None
    loaded = load_model(model, arch=arch, device=dev)
    data = load_trusted(trusted, loaded.spec, loaded.num_classes, labels_file=labels,
                        model_class_names=loaded.class_names, min_per_class=min_per_class)
    net = SplitClassifier.from_loaded(loaded).to(dev).eval()
    base = {k: v for k, v in {"steps": steps, "eval_every": eval_every}.items() if v is not None}
    res = self_poison_search(net, data, loaded.num_classes, defense, g, delta=max_cda_drop,
                             base_overrides=base, eval_frac=eval_frac, holdout=holdout,
                             canary_steps=canary_steps, seed=seed, device=dev, log=log)
    if store is not None:
        for t in res.trials:
            store.append({"key": f"search|{loaded.sha256[:16]}|{defense}|{len(data)}|{seed}|"
                                 f"{sorted(t['params'].items())}",
                          "game": "search", "model": str(model), "sha256": loaded.sha256,
                          "defense": defense, "seed": seed, "delta": max_cda_drop,
                          "canary": res.canary, **t, "time": time.time()})
    path = write_policy(res, out, force=force, model=str(model), trusted=str(trusted))
    b = res.best
    typer.echo(f"{path}: {defense} with " + ", ".join(f"{k}={v}" for k, v in b["params"].items())
               + f" (eta {b['eta']:.3f}, kept ASR {b['deployed_asr']:.3f}, CDA "
               f"{b['deployed_cda']:.3f}; implant ASR {res.canary['asr']:.3f})")
