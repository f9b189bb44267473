"""``scan eval bench-detect | bench-repair | bench-precision | attack-table``: the benchmarks
behind RESULTS.md.

With ``--out`` every row goes to the lab's row store as soon as it exists, and a rerun with the
same settings skips the models (or model x config pairs) already there; ``--summarize`` prints
the tables of an existing file without running anything.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Optional

import typer

from scanner.errors import InputError
from scanner.lab.app import eval_app, make_log, results_path

ModelsOpt = typer.Option(None, "--models", metavar="GLOB", help="ONNX files or glob patterns (repeat --models for several).")
JobsOpt = typer.Option(1, "--jobs", help="Models run at once, each in its own process with --threads threads (on 2 cores: --jobs 2 --threads 1 runs a zoo in about half the time; the per-model wall times are then those of a loaded machine).")
PrecisionOpt = typer.Option("auto", "--precision", help="auto|fp32|bf16, as `scan --precision` (the models run channels_last as in a scan).")
NchwOpt = typer.Option(False, "--nchw", help="Keep the models' NCHW weight layout (a scan uses channels_last on CPU); with --precision fp32 this is how the results before session 7 were made.")
OutOpt = typer.Option(None, "--out", help="Append per-model rows (JSONL) here; rows already in it with the same settings are not run again.")
SeedOpt = typer.Option(0, "--seed", help="Seed of the trusted draw, the held-out split and the method.")


def check_precision(precision: str) -> None:
    from scanner.ops.precision import PRECISIONS

    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def open_store(out: Optional[Path]):
    from scanner.lab.rows import RowStore

    return RowStore(results_path(out)) if out is not None else None


@eval_app.command("bench-detect", short_help="Scan a zoo of ONNX models with each detector; scores, ROC AUC, wall times.")
def bench_detect_cmd(
    models: Optional[list[str]] = ModelsOpt,
    trusted: int = typer.Option(500, "--trusted", help="Trusted images: the first N of a stratified draw of CIFAR-10 test images."),
    budget: str = typer.Option("standard", "--budget", help="fast|standard|thorough, as `scan --budget` (CPU budgets)."),
    methods: str = typer.Option("nc,cti", "--methods", help="Comma-separated detectors; nc runs the inversion once and reports both NC's MAD and the log-MAD 'mask' score."),
    threads: int = typer.Option(2, "--threads", help="torch threads per model being scanned."),
    jobs: int = JobsOpt,
    seed: int = SeedOpt,
    precision: str = PrecisionOpt,
    nchw: bool = NchwOpt,
    out: Optional[Path] = OutOpt,
    summarize: Optional[Path] = typer.Option(None, "--summarize", help="Scan nothing: print the table and ROC AUCs of rows written by --out (several runs over parts of a zoo may append to one file; a model's later row replaces its earlier one)."),
) -> None:
    """Detection benchmark: scan clean and backdoored zoo models (recipe sidecars beside them).

    Examples:\n
      scan eval bench-detect --models '.cache/zoo/*/*.onnx' --methods nc,cti,ratio --out rows.jsonl\n
      scan eval bench-detect --models '.cache/zoo/*/*_s10[345].onnx' --methods nc --seed 1 --jobs 2 --threads 1\n
      scan eval bench-detect --summarize rows.jsonl --methods nc,cti,ratio
    """
    from scanner.lab.bench_detect import bench_key, scan_one, summary_lines
    from scanner.lab.jobs import find_models, run_rows
    from scanner.lab.rows import latest, load_rows
    from scanner.scan import build_request

    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    if summarize is not None:
        rows = latest(load_rows(summarize), key=lambda r: r["model"])
        typer.echo("\n".join(summary_lines(sorted(rows, key=lambda r: r["model"]), method_list)))
        return
    check_precision(precision)
    for m in method_list:  # an unknown method or budget fails before any work
        build_request(method=m, budget_level=budget)
    paths = find_models(models or [".cache/zoo/*/*.onnx"], jobs, threads)
    store = open_store(out)
    job = dict(methods=method_list, budget_level=budget, n_trusted=trusted, seed=seed,
               threads=threads, precision=precision, nchw=nchw)
    work = [(bench_key(Path(p).name, method_list, budget, trusted, seed, precision, nchw), (p,))
            for p in paths]
    t0 = time.perf_counter()
    rows, skipped = run_rows(functools.partial(scan_one, **job), work, jobs, store,
                             lambda row: typer.echo(json.dumps(row), err=True))
    typer.echo("\n".join(summary_lines(sorted(rows, key=lambda r: r["model"]), method_list)))
    typer.echo(f"{len(rows)} models ({skipped} already in {out}), {jobs} job(s) x {threads} "
               f"thread(s), budget {budget}, precision {precision}: "
               f"{time.perf_counter() - t0:.0f} s")


@eval_app.command("bench-canary", short_help="What the canary implant costs each model: test CDA before/after, ASR, steps.")
def bench_canary_cmd(
    models: Optional[list[str]] = ModelsOpt,
    trusted: int = typer.Option(500, "--trusted", help="Trusted images: the first N of a stratified draw of CIFAR-10 test images."),
    threads: int = typer.Option(2, "--threads", help="torch threads per implant."),
    jobs: int = JobsOpt,
    seed: int = SeedOpt,
    precision: str = PrecisionOpt,
    out: Optional[Path] = OutOpt,
    summarize: Optional[Path] = typer.Option(None, "--summarize", help="Implant nothing: print the table of rows written by --out."),
) -> None:
    """Canary benchmark: implant the scan's canary into each model and measure what it cost on
    2 000 test images it never saw.

    Examples:\n
      scan eval bench-canary --models 'fixtures/models/*.onnx' --threads 1\n
      scan eval bench-canary --models "$HOME/.cache/backdoor-scanner/zoo/*/*.onnx" --jobs 2 --threads 1 --out rows.jsonl
    """
    from scanner.lab import bench_canary

    _per_model_bench(bench_canary, bench_canary.implant_one, models or ["fixtures/models/*.onnx"],
                     trusted, threads, jobs, seed, precision, out, summarize)


@eval_app.command("bench-gate", short_help="The default scan on a zoo: verdicts, TPR, clean pass rate, AUC, canary cost, time.")
def bench_gate_cmd(
    models: Optional[list[str]] = ModelsOpt,
    trusted: int = typer.Option(500, "--trusted", help="Trusted images: the first N of a stratified draw of CIFAR-10 test images."),
    threads: int = typer.Option(2, "--threads", help="torch threads per scan."),
    jobs: int = JobsOpt,
    seed: int = SeedOpt,
    precision: str = PrecisionOpt,
    out: Optional[Path] = OutOpt,
    summarize: Optional[Path] = typer.Option(None, "--summarize", help="Scan nothing: print the summary of rows written by --out."),
) -> None:
    """Gate benchmark: `scan MODEL --trusted DATA` on every model, with Neural Cleanse's published
    rule side by side; backdoors count when they implanted (sidecar ASR >= 0.8).

    Examples:\n
      scan eval bench-gate --models "$HOME/.cache/backdoor-scanner/zoo/*/*_s0.onnx" --out rows.jsonl\n
      scan eval bench-gate --summarize rows.jsonl
    """
    from scanner.lab import bench_gate

    _per_model_bench(bench_gate, bench_gate.scan_one, models or [], trusted, threads, jobs, seed,
                     precision, out, summarize)


def _per_model_bench(module, one, models: list[str], trusted: int, threads: int, jobs: int,
                     seed: int, precision: str, out: Optional[Path],
                     summarize: Optional[Path]) -> None:
    """A benchmark of one row per model (``module.bench_key``, ``module.summary_lines``; ``one``
    computes a row): resumable through ``--out``, or only summarised from it."""
    from scanner.lab.jobs import find_models, run_rows
    from scanner.lab.rows import latest, load_rows

    if summarize is not None:
        rows = latest(load_rows(summarize), key=lambda r: r["model"])
        typer.echo("\n".join(module.summary_lines(sorted(rows, key=lambda r: r["model"]))))
        return
    check_precision(precision)
    paths = find_models(models, jobs, threads)
    store = open_store(out)
    work = [(module.bench_key(Path(p).name, trusted, seed, precision), (p,)) for p in paths]
    t0 = time.perf_counter()
    job = functools.partial(one, n_trusted=trusted, seed=seed, threads=threads,
                            precision=precision)
    rows, skipped = run_rows(job, work, jobs, store,
                             lambda row: typer.echo(json.dumps(row), err=True))
    typer.echo("\n".join(module.summary_lines(sorted(rows, key=lambda r: r["model"]))))
    typer.echo(f"{len(rows)} models ({skipped} already in {out}), {jobs} job(s) x {threads} "
               f"thread(s), precision {precision}: {time.perf_counter() - t0:.0f} s")


@eval_app.command("bench-repair", short_help="Pivotal Tuning configs on backdoored ONNX models, side by side.")
def bench_repair_cmd(
    models: Optional[list[str]] = ModelsOpt,
    trusted: str = typer.Option("500", "--trusted", help="N: N stratified CIFAR-10 test images (as bench-detect); or a folder."),
    config: Optional[list[str]] = typer.Option(None, "--config", metavar="JSON", help="JSON overrides of PivotalConfig (and \"holdout\": the held-out share); repeat to compare variants. Default: '{}'."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Repair steps (default: the CPU standard budget's, as a scan)."),
    trajectory: int = typer.Option(0, "--trajectory", metavar="K", help="Also measure test ASR/CDA every K steps (slower); 0: kept state only."),
    held_views: bool = typer.Option(False, "--held-views", help="With --trajectory: also the accuracy over 8 fixed views of the held-out images per checkpoint."),
    threads: int = typer.Option(2, "--threads", help="torch threads per repair."),
    jobs: int = JobsOpt,
    seed: int = SeedOpt,
    precision: str = PrecisionOpt,
    nchw: bool = NchwOpt,
    out: Optional[Path] = OutOpt,
    summarize: Optional[Path] = typer.Option(None, "--summarize", help="Run nothing: print the summary of rows written by --out."),
    floor: Optional[str] = typer.Option(None, "--floor", metavar="ATTACK", help="Repair nothing: measure ATTACK's trigger (e.g. badnets) for every target class on --models (clean ones): the ASR no repair goes below."),
) -> None:
    """Repair benchmark: Pivotal Tuning configs on backdoored models; counts issue 4's target
    (real-trigger ASR <= 0.05 with a test-accuracy drop <= 2 points) per config.

    Examples:\n
      scan eval bench-repair --models '.cache/zoo/*/*_badnets_s10[012].onnx' --config '{}' --config '{"unlearn": 1.0}' --jobs 2 --threads 1\n
      scan eval bench-repair --models '.cache/zoo/*/*_clean_s10[345].onnx' --floor badnets --threads 1\n
      scan eval bench-repair --summarize rows.jsonl
    """
    from scanner.lab.bench_repair import bench_key, check_configs, repair_one
    from scanner.lab.jobs import find_models, run_rows
    from scanner.lab.repair_summary import floor_lines, floor_rows, summary_lines
    from scanner.lab.rows import latest, load_rows

    if summarize is not None:
        rows = latest(load_rows(summarize), key=lambda r: (r["model"], r["config"]))
        typer.echo("\n".join(summary_lines(rows)))
        return
    if not models:
        raise InputError("--models is required (unless --summarize)")
    if held_views and not trajectory:
        raise InputError("--held-views needs --trajectory K")
    check_precision(precision)
    paths = find_models(models, jobs, threads)
    if floor:
        typer.echo("\n".join(floor_lines(floor_rows(paths, floor, seed, threads), floor)))
        return
    configs = config or ["{}"]
    check_configs(configs)  # fail before any work on a typo
    store = open_store(out)
    job = dict(trusted=trusted, steps=steps, seed=seed, threads=threads, precision=precision,
               nchw=nchw, trajectory=trajectory, held_views=held_views)
    work = [(bench_key(Path(p).name, c, trusted, steps, seed, precision, nchw, trajectory,
                       held_views), (p, c)) for c in configs for p in paths]
    log = make_log(False)
    t0 = time.perf_counter()
    rows, skipped = run_rows(functools.partial(repair_one, **job), work, jobs, store, lambda row: log(
        f"{row['model']} {row['config']}: ASR {row['asr_before']:.3f} -> {row['asr_after']:.3f}, "
        f"CDA drop {100 * row['cda_drop']:+.1f} points, {row['wall_s']:.0f} s"))
    typer.echo("\n".join(summary_lines(rows)))
    typer.echo(f"{len(work)} repairs ({skipped} already in {out}), {jobs} job(s) x {threads} "
               f"thread(s), precision {precision}: {time.perf_counter() - t0:.0f} s")


@eval_app.command("bench-precision", short_help="Seconds per trigger-inversion step in fp32/bf16 x NCHW/channels_last.")
def bench_precision_cmd(
    model: Optional[Path] = typer.Option(None, "--model", help="ONNX model (default: fixtures/models/resnet20_clean.onnx)."),
    rows: int = typer.Option(320, "--rows", help="Images per step (classes x batch)."),
    repeats: int = typer.Option(6, "--repeats", help="Timed steps per case and round."),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads."),
) -> None:
    """Microbenchmark: one trigger-inversion step (two model copies, forward + input gradient)
    in each precision and weight layout, interleaved, and the ratio to float32 NCHW.

    Examples:\n
      scan eval bench-precision\n
      scan eval bench-precision --model fixtures/models/resnet8_clean.onnx --threads 1
    """
    from scanner.lab.bench_precision import DEFAULT_MODEL, bench_precision

    bench_precision(model or DEFAULT_MODEL, rows, repeats, threads, typer.echo, make_log(False))


@eval_app.command("attack-table", short_help="Train a clean and a poisoned model per attack; print CDA / ASR.")
def attack_table_cmd(
    arch: str = typer.Option("resnet20", "--arch", help="Architecture of every model."),
    epochs: int = typer.Option(10, "--epochs", help="Training epochs per model."),
    train_size: int = typer.Option(10_000, "--train-size", help="CIFAR-10 training images (the first N)."),
    test_size: int = typer.Option(2_000, "--test-size", help="Class-stratified test images measuring CDA and ASR."),
    attacks: str = typer.Option("badnets", "--attacks", help="Comma-separated attack names."),
    rate: float = typer.Option(0.01, "--rate", help="m = rate x train size (when no --m)."),
    m: Optional[int] = typer.Option(None, "--m", help="Poisoned samples per attack."),
    no_clean: bool = typer.Option(False, "--no-clean", help="Skip the clean reference model."),
    target: int = typer.Option(0, "--target", help="Target class of every backdoor."),
    lr: float = typer.Option(0.1, "--lr", help="Peak learning rate."),
    batch_size: int = typer.Option(128, "--batch-size", help="Training batch size."),
    seed: int = typer.Option(0, "--seed", help="Seed of training and triggers."),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads (keep low on shared machines)."),
    device: str = typer.Option("cpu", "--device", help="cpu|cuda|auto."),
) -> None:
    """Attack table: does each attack implant with the trainer as configured (the paper's
    Table 2 columns m, CDA, ASR; ASR@clean = the same trigger on the clean model)?

    Examples:\n
      scan eval attack-table --arch resnet20 --epochs 10 --train-size 10000 --attacks badnets,wanet --rate 0.01
    """
    from scanner.lab.attack_table import HEADER, attack_table, row_line
    from scanner.lab.zoo import ZooSpec

    names = [a.strip() for a in attacks.split(",") if a.strip()]
    mm = m if m is not None else max(1, round(rate * train_size))
    spec = ZooSpec(arch=arch, train_size=train_size, epochs=epochs, lr=lr, batch_size=batch_size,
                   target=target)
    rows = attack_table(spec, names, mm, not no_clean, test_size=test_size, seed=seed,
                        threads=threads, device=device, log=make_log(False))
    typer.echo("\n".join([HEADER] + [row_line(r) for r in rows]))
