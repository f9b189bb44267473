"""``scan eval``: the paper's games, the self-poisoning search, tables and plots.

Registered by the main CLI as a sub-app (``app.add_typer(eval_app, name="eval")``). Errors are
:class:`scanner.errors.InputError` (exit 2) like every other command; progress goes to stderr,
tables to stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from scanner.errors import InputError

eval_app = typer.Typer(
    no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help="Evaluate attacks and defenses the way the paper does: robustness (Alg. 1), "
         "detectability (Alg. 2), defense hyper-parameter search by self-poisoning (Sec. 5.3), "
         "and Table-2/Table-3 shaped tables and Fig. 5/6 shaped plots from the results.\n\n"
         "Games train on CIFAR-10 from ../shared/data/cifar10 (or $SCAN_CIFAR10_DIR); models are "
         "cached by recipe hash and results are appended to a JSONL file, so an interrupted run "
         "resumes where it stopped.")

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
DeviceOpt = typer.Option("auto", "--device", help="auto|cpu|cuda.")
ThreadsOpt = typer.Option(None, "--threads", help="torch CPU threads (keep low on a shared machine).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress output.")
HoldoutOpt = typer.Option(0.2, "--holdout", help="Share of the trusted images held out for the defense's / detector's own checks.")
DeltaOpt = typer.Option(0.02, "--max-cda-drop", help="Delta: the largest clean-accuracy drop (fraction) a repair may cost.")


def _log(quiet: bool):
    if quiet:
        return lambda msg: None
    return lambda msg: typer.echo(msg, err=True)


def _setup(device: str, threads: Optional[int]):
    import torch

    from scanner.device import resolve_device

    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads must be positive, got {threads}")
        torch.set_num_threads(threads)
    return resolve_device(device)


def _spec(arch, train_size, epochs, lr, batch_size, target):
    from scanner.eval.games import ZooSpec
    from scanner.models.registry import get_config

    get_config(arch)
    if epochs < 1:
        raise InputError(f"--epochs must be positive, got {epochs}")
    return ZooSpec(arch=arch, train_size=train_size, epochs=epochs, lr=lr, batch_size=batch_size,
                   target=target)


def _results_path(out: Path) -> Path:
    if out.suffix.lower() != ".jsonl":
        raise InputError(f"--out must be a .jsonl file, got {out.name!r}")
    return out


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
    out: Path = typer.Option(Path("eval_results.jsonl"), "--out", help="Results file (JSONL); rows already in it are skipped."),
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
    from scanner.eval.games import (RecipeBuilder, ResultStore, attack_grid, load_game_data,
                                    parse_list, parse_r, run_robustness)

    log = _log(quiet)
    dev = _setup(device, threads)
    spec = _spec(arch, train_size, epochs, lr, batch_size, target)
    rs = parse_r(r)
    defs = parse_list(defenses, str, "--defenses")
    for d in defs:
        get_defense(d)
    pairs = attack_grid(parse_list(attacks, str, "--attacks"),
                        parse_list(m, int, "--m") if m else None, rate, train_size)
    seed_list = parse_list(seeds, int, "--seeds")
    if not 0 < max_cda_drop < 1:
        raise InputError(f"--max-cda-drop must be in (0, 1), got {max_cda_drop}")
    store = ResultStore(_results_path(out))
    pool = max(int(round(x * train_size)) if x < 1 else int(x) for x in rs)
    data = load_game_data(train_size, pool, test_size)
    over = {k: v for k, v in {"steps": steps, "eval_every": eval_every}.items() if v is not None}
    counts = run_robustness(store, RecipeBuilder(cache_dir, data, device=str(dev), log=log), data,
                            attacks=pairs, defenses=defs, rs=rs, seeds=seed_list, spec=spec,
                            delta=max_cda_drop, holdout=holdout,
                            overrides={d: over for d in defs}, device=dev, log=log)
    typer.echo(f"{out}: {counts['ran']} new row(s), {counts['skipped']} already done, "
               f"{counts['models_built']} model(s) built or loaded")


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
    out: Path = typer.Option(Path("eval_results.jsonl"), "--out", help="Results file (JSONL); rows already in it are skipped."),
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
    from scanner.eval.games import (RecipeBuilder, ResultStore, attack_grid, load_game_data,
                                    parse_list, parse_r, run_detectability)

    log = _log(quiet)
    dev = _setup(device, threads)
    spec = _spec(arch, train_size, epochs, lr, batch_size, target)
    (rr,) = parse_r(format(r, "g"))
    dets = parse_list(detectors, str, "--detectors")
    pairs = attack_grid(parse_list(attacks, str, "--attacks"),
                        parse_list(m, int, "--m") if m else None, rate, train_size)
    bud = get_budget(dev.type, budget)
    store = ResultStore(_results_path(out))
    pool = int(round(rr * train_size)) if rr < 1 else int(rr)
    data = load_game_data(train_size, pool, test_size)
    counts = run_detectability(store, RecipeBuilder(cache_dir, data, device=str(dev), log=log),
                               data, attacks=pairs, detectors=dets, repeats=repeats, spec=spec,
                               r=rr, seed_base=seed_base, budget=bud, holdout=holdout, device=dev,
                               log=log)
    typer.echo(f"{out}: {counts['ran']} new row(s), {counts['skipped']} already done, "
               f"{counts['models_built']} model(s) built or loaded")


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
    from scanner.eval.games import ResultStore
    from scanner.eval.search import parse_grid, self_poison_search, write_policy
    from scanner.io.data import load_trusted
    from scanner.io.loader import load_model

    log = _log(quiet)
    dev = _setup(device, threads)
    get_defense(defense)
    if out.exists() and not force:
        raise InputError(f"{out} exists; not overwriting it", hint="pass --force to replace it")
    if out.suffix.lower() != ".toml":
        raise InputError(f"--out must be a .toml file, got {out.name!r}")
    g = parse_grid(grid) if grid else None
    loaded = load_model(model, arch=arch, device=dev)
    data = load_trusted(trusted, loaded.spec, loaded.num_classes, labels_file=labels,
                        model_class_names=loaded.class_names, min_per_class=min_per_class)
    net = SplitClassifier.from_loaded(loaded).to(dev).eval()
    base = {k: v for k, v in {"steps": steps, "eval_every": eval_every}.items() if v is not None}
    res = self_poison_search(net, data, loaded.num_classes, defense, g, delta=max_cda_drop,
                             base_overrides=base, eval_frac=eval_frac, holdout=holdout,
                             canary_steps=canary_steps, seed=seed, device=dev, log=log)
    if results is not None:
        import time

        store = ResultStore(_results_path(results))
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


@eval_app.command("tables", short_help="Print Table-2 / Table-3 shaped tables from a results file.")
def tables_cmd(
    results: Path = typer.Option(..., "--results", help="Results file written by robustness/detectability."),
    markdown: bool = typer.Option(False, "--markdown", help="Print GitHub Markdown tables instead of aligned text."),
    which: str = typer.Option("2,3", "--table", help="Which tables: 2 (CDA, ASR, detectability AUC), 3 (remaining ASR per defense x r), or 2,3."),
    metric: str = typer.Option("eta", "--metric", help="Table 3 cell: eta (lowest ASR within Delta, the paper's) or deployed_asr (the state the defense keeps by its own held-out rule)."),
    n_boot: int = typer.Option(1000, "--bootstrap", help="Bootstrap draws for the AUC uncertainty."),
) -> None:
    """Print Table-2 and Table-3 shaped tables from a results file.

    Examples:\n
      scan eval tables --results results.jsonl\n
      scan eval tables --results results.jsonl --markdown --table 3 >> $GITHUB_STEP_SUMMARY
    """
    from scanner.eval.games import load_rows
    from scanner.eval.tables import table2, table3

    tabs = {t.strip() for t in which.split(",") if t.strip()}
    if not tabs or not tabs <= {"2", "3"}:
        raise InputError(f"--table must be 2, 3 or 2,3, got {which!r}")
    if metric not in ("eta", "deployed_asr"):
        raise InputError(f"--metric must be eta or deployed_asr, got {metric!r}")
    rows = load_rows(results)
    parts = []
    if "2" in tabs:
        parts.append(table2(rows, markdown=markdown, n_boot=n_boot))
    if "3" in tabs:
        parts.append(table3(rows, markdown=markdown, metric=metric))
    typer.echo("\n\n".join(parts))


@eval_app.command("plots", short_help="Write PNG plots: repair trade-offs (Fig. 6), detectability vs m (Fig. 5).")
def plots_cmd(
    results: Path = typer.Option(..., "--results", help="Results file written by robustness/detectability."),
    out_dir: Path = typer.Option(Path("plots"), "--out-dir", help="Folder for the PNG files."),
    dpi: int = typer.Option(120, "--dpi", help="Resolution of the PNG files."),
) -> None:
    """Write PNG plots: ASR-vs-CDA repair trade-offs (Fig. 6) and ASR/detectability vs m (Fig. 5).

    Needs matplotlib (pip install matplotlib).

    Examples:\n
      scan eval plots --results results.jsonl --out-dir plots/
    """
    from scanner.eval.games import load_rows
    from scanner.eval.plots import _pyplot, detectability_plots, tradeoff_plots

    _pyplot()  # a clear error before reading anything
    rows = load_rows(results)
    paths = tradeoff_plots(rows, out_dir, dpi=dpi) + detectability_plots(rows, out_dir, dpi=dpi)
    if not paths:
        raise InputError(f"{results}: no robustness or detectability rows to plot")
    for p in paths:
        typer.echo(str(p))
