"""``scan eval robustness | detectability | search``: the paper's games and the search."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from scanner.errors import InputError
from scanner.lab.app import (DeltaOpt, DeviceOpt, HoldoutOpt, QuietOpt, ThreadsOpt, eval_app,
                             make_log, results_path, setup_device)

DEFENSES = "pivotal,fine_pruning,nad,weight_decay,nc_repair"

AttacksOpt = typer.Option("badnets", "--attacks", help="Comma-separated attacks (see `scan attack --list`), e.g. badnets,wanet,adaptive_blend.")
MOpt = typer.Option(None, "--m", help="Comma-separated numbers of poisoned samples, e.g. 10,50,250 (default: --rate x --train-size).")
RateOpt = typer.Option(0.01, "--rate", help="Poisoning rate used when --m is not given.")
ArchOpt = typer.Option("resnet8", "--arch", help="Architecture trained for every model (see `scan inspect --list-archs`).")
TrainSizeOpt = typer.Option(20_000, "--train-size", help="CIFAR-10 training images per model (the first N of the training split).")
EpochsOpt = typer.Option(10, "--epochs", help="Training epochs per model.")
LrOpt = typer.Option(0.1, "--lr", help="Peak learning rate of model training.")
BatchOpt = typer.Option(128, "--batch-size", help="Batch size of model training.")
TargetOpt = typer.Option(0, "--target", help="Target class of every backdoor.")
TestSizeOpt = typer.Option(2000, "--test-size", help="Class-stratified CIFAR-10 test images measuring CDA and ASR.")
CacheOpt = typer.Option(Path(".cache/zoo"), "--cache-dir", help="Model cache, keyed by recipe hash (shared with `python -m fixtures.recipes`).")
GameOutOpt = typer.Option(Path("eval_results.jsonl"), "--out", help="Results file (JSONL); rows already in it are skipped.")


def zoo_spec(arch, train_size, epochs, lr, batch_size, target):
    """The zoo's training recipe from the flags (an unknown --arch fails here)."""
    from scanner.lab.zoo import ZooSpec
    from scanner.models.registry import get_config

    get_config(arch)
    if epochs < 1:
        raise InputError(f"--epochs must be positive, got {epochs}")
    return ZooSpec(arch=arch, train_size=train_size, epochs=epochs, lr=lr, batch_size=batch_size,
                   target=target)


def attack_pairs(attacks: str, m: Optional[str], rate: float, train_size: int) -> list:
    """(attack, m) pairs from --attacks and --m (or --rate)."""
    from scanner.lab.parsing import attack_grid, parse_list

    return attack_grid(parse_list(attacks, str, "--attacks"),
                       parse_list(m, int, "--m") if m else None, rate, train_size)


def open_zoo(out: Path, cache_dir: Path, train_size: int, pool: int, test_size: int, dev, log):
    """(row store, CIFAR-10 data, model builder) of a game: checked and loaded once."""
    from scanner.lab.data import load_game_data
    from scanner.lab.rows import RowStore
    from scanner.lab.zoo import RecipeBuilder

    store = RowStore(results_path(out))
    data = load_game_data(train_size, pool, test_size)
    return store, data, RecipeBuilder(cache_dir, data, device=str(dev), log=log)


def report_counts(out: Path, counts: dict) -> None:
    typer.echo(f"{out}: {counts['ran']} new row(s), {counts['skipped']} already done, "
               f"{counts['models_built']} model(s) built or loaded")


@eval_app.command("robustness", short_help="Robustness game (Alg. 1): repair poisoned models, eta and v_r per defense.")
def robustness_cmd(
    attacks: str = AttacksOpt,
    defenses: str = typer.Option(DEFENSES, "--defenses", help="Comma-separated defenses: pivotal, fine_pruning, nad, weight_decay, nc_repair."),
    r: str = typer.Option("0.01,0.025,0.05", "--r", help="Trusted data sizes: fractions of --train-size (0.01 = 1 %), or whole numbers of images."),
    m: Optional[str] = MOpt,
    rate: float = RateOpt,
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated seeds; each seed is its own poisoned model, trusted draw and repair."),
    arch: str = ArchOpt,
    train_size: int = TrainSizeOpt,
    epochs: int = EpochsOpt,
    lr: float = LrOpt,
    batch_size: int = BatchOpt,
    target: int = TargetOpt,
    test_size: int = TestSizeOpt,
    steps: Optional[int] = typer.Option(None, "--steps", help="Repair steps for every defense (default: each defense's CPU/CUDA default)."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Checkpoint interval of the ASR/CDA trajectory (default: the defense's, 25 on CPU, 50 on CUDA)."),
    max_cda_drop: float = DeltaOpt,
    holdout: float = HoldoutOpt,
    out: Path = GameOutOpt,
    cache_dir: Path = CacheOpt,
    device: str = DeviceOpt,
    threads: Optional[int] = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Robustness game (paper Alg. 1): repair poisoned models, record ASR/CDA per checkpoint.

    For every attack, m and seed a poisoned model is trained (or loaded from --cache-dir), each
    defense repairs it with r trusted images (unseen CIFAR-10 training images), and the real
    trigger's ASR and the test CDA are measured at every checkpoint. eta = lowest ASR while the
    test CDA stays within --max-cda-drop of the unrepaired model; v_r = eta at that r.

    Examples:\n
      scan eval robustness --attacks badnets,wanet --defenses pivotal,weight_decay --r 0.01,0.025,0.05 --out results.jsonl\n
      scan eval robustness --attacks badnets --m 10,100,1000 --defenses pivotal --r 0.01 --train-size 20000 --epochs 10\n
      scan eval robustness --attacks cbadnets --rate 0.05 --seeds 0,1,2 --steps 500 --device cuda
    """
    from scanner.defenses.registry import get_defense
    from scanner.lab.parsing import parse_list, parse_r
    from scanner.lab.robustness import run_robustness

    log = make_log(quiet)
    dev = setup_device(device, threads)
    spec = zoo_spec(arch, train_size, epochs, lr, batch_size, target)
    rs = parse_r(r)
    defs = parse_list(defenses, str, "--defenses")
    for d in defs:
        get_defense(d)
    pairs = attack_pairs(attacks, m, rate, train_size)
    seed_list = parse_list(seeds, int, "--seeds")
    if not 0 < max_cda_drop < 1:
        raise InputError(f"--max-cda-drop must be in (0, 1), got {max_cda_drop}")
    pool = max(int(round(x * train_size)) if x < 1 else int(x) for x in rs)
    store, data, builder = open_zoo(out, cache_dir, train_size, pool, test_size, dev, log)
    over = {k: v for k, v in {"steps": steps, "eval_every": eval_every}.items() if v is not None}
    counts = run_robustness(store, builder, data, attacks=pairs, defenses=defs, rs=rs,
                            seeds=seed_list, spec=spec, delta=max_cda_drop, holdout=holdout,
                            overrides={d: over for d in defs}, device=dev, log=log)
    report_counts(out, counts)


@eval_app.command("detectability", short_help="Detectability game (Alg. 2): detector scores of clean and poisoned models.")
def detectability_cmd(
    attacks: str = AttacksOpt,
    m: Optional[str] = MOpt,
    rate: float = RateOpt,
    repeats: int = typer.Option(5, "--repeats", help="Models of each kind: N clean models, and N poisoned models per (attack, m), each with its own seed."),
    detectors: str = typer.Option("mask,nc,cti", "--detectors", help="Comma-separated detectors as in `scan --method`: mask, nc, cti, ratio."),
    r: float = typer.Option(500, "--r", help="Trusted images given to the detector: a whole number, or a fraction of --train-size."),
    budget: str = typer.Option("fast", "--budget", help="Detector compute budget: fast|standard|thorough (as `scan --budget`)."),
    seed_base: int = typer.Option(0, "--seed-base", help="Poisoned model i uses seed BASE+i, clean model i seed BASE+10000+i."),
    arch: str = ArchOpt,
    train_size: int = TrainSizeOpt,
    epochs: int = EpochsOpt,
    lr: float = LrOpt,
    batch_size: int = BatchOpt,
    target: int = TargetOpt,
    test_size: int = TestSizeOpt,
    holdout: float = HoldoutOpt,
    out: Path = GameOutOpt,
    cache_dir: Path = CacheOpt,
    device: str = DeviceOpt,
    threads: Optional[int] = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Detectability game (paper Alg. 2): score clean and poisoned models with each detector.

    One row per (model, detector) holds the model score, CDA and ASR; `scan eval tables` turns
    them into ROC AUC per (attack, m) with a bootstrap uncertainty over models.

    Examples:\n
      scan eval detectability --attacks badnets --m 5,20,100 --repeats 10 --detectors mask,nc --out results.jsonl\n
      scan eval detectability --attacks badnets,wanet --rate 0.01 --repeats 5 --detectors cti --budget standard
    """
    from scanner.budget import get_budget
    from scanner.lab.detectability import run_detectability
    from scanner.lab.parsing import parse_list, parse_r

    log = make_log(quiet)
    dev = setup_device(device, threads)
    spec = zoo_spec(arch, train_size, epochs, lr, batch_size, target)
    (rr,) = parse_r(format(r, "g"))
    dets = parse_list(detectors, str, "--detectors")
    pairs = attack_pairs(attacks, m, rate, train_size)
    bud = get_budget(dev.type, budget)
    pool = int(round(rr * train_size)) if rr < 1 else int(rr)
    store, data, builder = open_zoo(out, cache_dir, train_size, pool, test_size, dev, log)
    counts = run_detectability(store, builder, data, attacks=pairs, detectors=dets,
                               repeats=repeats, spec=spec, r=rr, seed_base=seed_base, budget=bud,
                               holdout=holdout, device=dev, log=log)
    report_counts(out, counts)
