"""``scan`` command line: parse flags, call :mod:`scanner.pipeline`, render, choose exit codes.

Exit codes: 0 pass - 1 backdoor suspected - 2 usage/config/input error - 3 inconclusive or
runtime failure. Uncaught exceptions exit 3, never 1 (1 is a verdict).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from scanner import __version__
from scanner.errors import EXIT_INCONCLUSIVE, EXIT_INPUT, ScanError

DEFAULT_COMMAND = "detect"


class DefaultCommandGroup(TyperGroup):
    """``scan MODEL ...`` means ``scan detect MODEL ...`` once ``detect`` is registered."""

    def parse_args(self, ctx, args):  # type: ignore[override]
        if args and args[0] not in self.commands and not args[0].startswith("-") \
                and DEFAULT_COMMAND in self.commands:
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=DefaultCommandGroup, no_args_is_help=True, add_completion=False,
    help="Backdoor scanner for image classifiers (ONNX or safetensors + --arch).\n\n"
         "Exit codes: 0 pass, 1 backdoor suspected, 2 bad input, 3 inconclusive.",
    rich_markup_mode=None)


def _console(stderr: bool = False) -> Console:
    """Rich console honouring NO_COLOR (https://no-color.org): no escape codes at all then."""
    plain = bool(os.environ.get("NO_COLOR"))
    return Console(stderr=stderr, no_color=plain, color_system=None if plain else "auto")


def _stderr_console() -> Console:
    return _console(stderr=True)


def _spec_overrides(layout: Optional[str], input_size: Optional[str], value_range: Optional[str],
                    mean: Optional[str], std: Optional[str]) -> dict:
    from scanner.errors import InputError
    from scanner.io.spec import parse_floats, parse_value_range

    size = None
    if input_size:
        parts = input_size.lower().replace("x", ",").split(",")
        try:
            size = (int(parts[0]), int(parts[-1]))
        except ValueError:
            raise InputError(f"--input-size: expected HxW (e.g. 32x32), got {input_size!r}") from None
    if layout is not None and layout.upper() not in ("NCHW", "NHWC"):
        raise InputError(f"--layout must be NCHW or NHWC, got {layout!r}")
    return {"layout": layout.upper() if layout else None, "size": size,
            "value_range": parse_value_range(value_range),
            "mean": parse_floats(mean, "--mean"), "std": parse_floats(std, "--std")}


ArchOpt = typer.Option(None, "--arch", help="Architecture of a safetensors file (see --list-archs).")
LayoutOpt = typer.Option(None, "--layout", help="Input layout NCHW|NHWC (default: from the graph).")
SizeOpt = typer.Option(None, "--input-size", help="Input HxW when the graph does not fix it, e.g. 32x32.")
RangeOpt = typer.Option(None, "--value-range",
                        help="Pixel range the model expects, MIN,MAX (default 0,1; uint8 inputs 0,255).")
MeanOpt = typer.Option(None, "--mean", help="Per-channel mean to subtract (only if NOT inside the graph), e.g. 0.4914,0.4822,0.4465.")
StdOpt = typer.Option(None, "--std", help="Per-channel std to divide by (only if NOT inside the graph).")
LabelsOpt = typer.Option(None, "--labels", help="Class names file, one per line (line i = class i).")
DeviceOpt = typer.Option("auto", "--device", help="auto|cpu|cuda (auto picks CUDA when torch sees it).")


@app.command("inspect")
def inspect_cmd(
    model: Optional[Path] = typer.Argument(None, help="Model file: .onnx, or .safetensors with --arch."),
    arch: Optional[str] = ArchOpt,
    trusted: Optional[Path] = typer.Option(
        None, "--trusted", help="Optional trusted data (folder / CSV / npz): also report clean accuracy."),
    labels: Optional[Path] = LabelsOpt,
    min_per_class: int = typer.Option(5, "--min-per-class", help="Minimum trusted images per class."),
    layout: Optional[str] = LayoutOpt, input_size: Optional[str] = SizeOpt,
    value_range: Optional[str] = RangeOpt, mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt,
    device: str = DeviceOpt,
    as_json: bool = typer.Option(False, "--json", help="Print only JSON on stdout."),
    list_archs: bool = typer.Option(False, "--list-archs", help="List known --arch names and exit."),
) -> None:
    """Show how the scanner reads a model: input spec, ops, import fixes, onnxruntime parity.

    Examples:\n
      scan inspect model.onnx\n
      scan inspect weights.safetensors --arch resnet20 --trusted data/
    """
    from scanner.device import resolve_device
    from scanner.errors import InputError

    if list_archs:
        from scanner.models import get_config, list_archs as names

        for n in names():
            typer.echo(f"{n:18s} {get_config(n).description}")
        return
    if model is None:
        raise InputError("missing MODEL argument", hint="scan inspect model.onnx")
    from scanner import pipeline

    res = pipeline.inspect(model, arch=arch, trusted=trusted, labels_file=labels,
                           min_per_class=min_per_class, device=resolve_device(device),
                           spec_overrides=_spec_overrides(layout, input_size, value_range, mean, std))
    if as_json:
        typer.echo(json.dumps(res.to_dict(), indent=2, default=str))
    else:
        from scanner.report.terminal import render_inspect

        render_inspect(res, _console())


def eta_text(elapsed_s: float, done: int, remaining: int) -> str:
    """"eta 3m20s" from the rate so far; empty before any rate is known or once nothing remains.

    Why: a default scan of a ResNet-18-size model runs about 16 minutes on 2 cores (RESULTS 5),
    and a CI log that says only "step 40/200" does not tell anyone whether to wait.
    """
    if done <= 0 or remaining <= 0 or elapsed_s <= 0:
        return ""
    secs = round(elapsed_s / done * remaining)
    return f"eta {secs // 60}m{secs % 60:02d}s" if secs >= 60 else f"eta {secs}s"


class _Progress:
    """Progress on stderr: a Rich bar on a terminal, plain periodic lines in CI logs."""

    def __init__(self, quiet: bool, clock=None) -> None:
        import time

        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.clock = clock or time.monotonic
        self.last: dict[str, float] = {}  # per phase: a parallel canary reports beside the scan
        self.start: dict[str, tuple[float, int]] = {}  # per phase: (time, step) of its first report
        self.seen: dict[str, int] = {}  # per phase: the last step reported to us

    def __call__(self, step: int, total: int, info: dict) -> None:
        if self.quiet:
            return
        now = self.clock()
        info = dict(info)
        phase = info.pop("phase", "")
        if phase not in self.start or step < self.seen.get(phase, 0):  # a phase (re)starts
            self.start[phase] = (now, step)
        self.seen[phase] = step
        if step != total and now - self.last.get(phase, 0.0) < (0.5 if self.tty else 10.0):
            return
        self.last[phase] = now
        extra = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in info.items() if not isinstance(v, (list, dict)))
        pct = f"{100 * step // max(1, total):3d}%"
        t0, s0 = self.start[phase]
        eta = eta_text(now - t0, step - s0, total - step)
        pct = f"{pct} {eta}" if eta else pct
        line = f"  {phase + ': ' if phase else ''}step {step}/{total} {pct} {extra}".rstrip()
        if self.tty:
            end = "\r" if step != total else "\n"
            sys.stderr.write(f"{line}\033[K{end}")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


ConfigOpt = typer.Option(None, "--config", help="Policy TOML. Default: ./scan.toml, else [tool.scan] in pyproject.toml (searched up to the repository root), else built-in defaults (rules/default.toml).")
BudgetOpt = typer.Option("standard", "--budget", help="fast|standard|thorough compute budget (numbers per device in the policy).")
PrecisionOpt = typer.Option("auto", "--precision", help="auto|fp32|bf16: arithmetic of the optimisation loops (repair, trigger inversion, canary implant). bf16 autocast is about 2x faster on a CPU with native bf16 (auto picks it there); accuracy and trigger-success measurements always run in float32.")
SeedOpt = typer.Option(0, "--seed", help="Seed: the same seed repeats the scan on the same machine.")
JsonOpt = typer.Option(False, "--json", help="Print only the JSON report on stdout (progress and messages go to stderr).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress output.")
ReportDirOpt = typer.Option(None, "--report-dir", help="Write report.json, report.sarif, report.junit.xml, report.md, report.html and triggers/*.png here.")


def _check_precision(precision: str) -> None:
    from scanner.errors import InputError
    from scanner.ops.precision import PRECISIONS

    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def _model_uri(model: Path) -> str:
    """The model's path relative to the repository (SARIF locations must be repo-relative)."""
    base = Path(os.environ.get("GITHUB_WORKSPACE") or Path.cwd()).resolve()
    try:
        return Path(model).resolve().relative_to(base).as_posix()
    except ValueError:
        return Path(model).as_posix()


def _gate_and_report(res, policy, model: Path, report_dir: Optional[Path], as_json: bool) -> int:
    """Apply waivers, write the reports, render; returns the exit code."""
    from scanner.gate import decide

    decision = decide(res.verdict, res.model.get("sha256", ""), policy)
    doc = res.to_dict()
    doc["gate"] = decision.to_dict()
    doc["waivers"] = decision.waivers
    trigger_paths = None
    if report_dir is not None:
        from scanner.report.writer import write_reports

        written = write_reports(doc, Path(report_dir), triggers=res.artifacts.get("triggers"),
                                model_uri=_model_uri(model))
        trigger_paths = {k: str(v) for k, v in written.items()}
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        from scanner.report.markdown import append_step_summary, to_markdown

        append_step_summary(to_markdown(doc))
    if as_json:
        from scanner.report.schema import to_report_json

        typer.echo(json.dumps(to_report_json(doc, None), indent=2, default=str))
    else:
        from scanner.report.terminal import render_scan

        console = _console()
        render_scan(res, console)
        for note in decision.notes:
            console.print(f"  gate: {note}", highlight=False)
        if trigger_paths:
            console.print(f"  reports: {report_dir}", highlight=False)
    return decision.exit_code


@app.command("detect")
def detect_cmd(
    model: Path = typer.Argument(..., help="Model file: .onnx, or .safetensors with --arch."),
    trusted: Path = typer.Option(..., "--trusted", help="Trusted data: folder of class folders, CSV path,label, or npz x,y."),
    arch: Optional[str] = ArchOpt,
    labels: Optional[Path] = LabelsOpt,
    config: Optional[Path] = ConfigOpt,
    method: Optional[str] = typer.Option(None, "--method", help="mask (default: reversed-trigger mask-norm outlier test), nc (Neural Cleanse as published) cti (Calibrated Trigger Inversion after a repair, experimental) or ratio (mask-norm ratio between the model and its repair, experimental); default from the policy."),
    budget: str = BudgetOpt,
    no_canary: bool = typer.Option(False, "--no-canary", help="Skip the sensitivity canary (a pass is then unverified)."),
    precision: str = PrecisionOpt,
    canary_mode: str = typer.Option("auto", "--canary-mode", help="auto|parallel|sequential: run the canary beside the main detection, each on half of the CPU threads (auto does where it can: CPU, 2+ threads, every class re-scanned, no dropout), or after it. Parallel saves wall time on a model that passes and costs some on one that is flagged."),
    seed: int = SeedOpt,
    layout: Optional[str] = LayoutOpt, input_size: Optional[str] = SizeOpt,
    value_range: Optional[str] = RangeOpt, mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt,
    device: str = DeviceOpt,
    report_dir: Optional[Path] = ReportDirOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Scan a model for a backdoor (the default command: `scan MODEL --trusted DIR`).

    Exit 0 pass, 1 backdoor suspected, 2 bad input, 3 inconclusive.

    Examples:\n
      scan model.onnx --trusted data/\n
      scan model.onnx --trusted data/ --report-dir scan-report --budget thorough\n
      scan weights.safetensors --arch resnet20 --trusted data.npz --json
    """
    import torch

    from scanner import pipeline
    from scanner.device import resolve_device
    from scanner.errors import InputError
    from scanner.policy import find_policy

    from scanner.policy import METHODS

    if method is not None and method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    _check_precision(precision)
    policy = find_policy(config)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    settings = pipeline.ScanSettings(seed=seed, budget_level=budget, method=method,
                                     canary=not no_canary, precision=precision,
                                     canary_mode=canary_mode)
    res = pipeline.detect(model, trusted, arch=arch, labels_file=labels,
                          spec_overrides=_spec_overrides(layout, input_size, value_range, mean, std),
                          policy=policy, settings=settings, device=dev,
                          progress=_Progress(quiet))
    raise typer.Exit(_gate_and_report(res, policy, model, report_dir, as_json))


@app.command("repair")
def repair_cmd(
    model: Path = typer.Argument(..., help="Model file: .onnx, or .safetensors with --arch."),
    trusted: Path = typer.Option(..., "--trusted", help="Trusted data (as for detect); part is held out to check clean accuracy."),
    out: Path = typer.Option(..., "--out", help="Where to write the repaired model (.onnx, or .safetensors); never the input file."),
    arch: Optional[str] = ArchOpt,
    labels: Optional[Path] = LabelsOpt,
    config: Optional[Path] = ConfigOpt,
    defense: Optional[str] = typer.Option(None, "--defense", help="pivotal (Pivotal Tuning, default from the policy) or a baseline: fine_pruning, nad, weight_decay, nc_repair."),
    max_cda_drop: Optional[float] = typer.Option(None, "--max-cda-drop", help="Largest held-out clean-accuracy drop allowed, fraction (default: policy, 0.02)."),
    rescan: bool = typer.Option(True, "--rescan/--no-rescan", help="Scan the repaired model again and exit 1 when it is still flagged."),
    from_report: Optional[Path] = typer.Option(None, "--from-report", help="report.json (or --json output) of a scan of this same file: Pivotal Tuning focuses on its top class instead of inverting triggers again (checked by SHA-256)."),
    budget: str = BudgetOpt,
    precision: str = PrecisionOpt,
    seed: int = SeedOpt,
    layout: Optional[str] = LayoutOpt, input_size: Optional[str] = SizeOpt,
    value_range: Optional[str] = RangeOpt, mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt,
    device: str = DeviceOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Repair a model and write a verified copy (the input is never modified).

    Exit 0: repaired model written and verified with onnxruntime; 1: written, but the re-scan still
    flags it; 2: bad input; 3: no repair within the accuracy budget (nothing written) or failure.

    Examples:\n
      scan repair model.onnx --trusted data/ --out fixed.onnx\n
      scan repair model.onnx --trusted data/ --out fixed.onnx --defense fine_pruning --no-rescan\n
      scan model.onnx --trusted data/ --report-dir out/ || scan repair model.onnx --trusted data/ --out fixed.onnx --from-report out/report.json
    """
    import torch

    from scanner import pipeline
    from scanner.defenses.registry import list_defenses
    from scanner.device import resolve_device
    from scanner.errors import EXIT_BACKDOOR, EXIT_PASS, InputError
    from scanner.policy import find_policy

    if defense is not None and defense not in list_defenses():
        raise InputError(f"--defense must be one of {', '.join(list_defenses())}, got {defense!r}")
    if max_cda_drop is not None and not 0.0 <= max_cda_drop <= 1.0:
        raise InputError(f"--max-cda-drop must be a fraction in [0, 1], got {max_cda_drop}")
    if out.suffix.lower() not in (".onnx", ".safetensors"):
        raise InputError(f"--out must end in .onnx or .safetensors, got {out.name!r}")
    _check_precision(precision)
    policy = find_policy(config)
    if max_cda_drop is not None:
        policy.repair.max_cda_drop = max_cda_drop
    dev = resolve_device(device)
    torch.manual_seed(seed)
    settings = pipeline.ScanSettings(seed=seed, budget_level=budget, precision=precision)
    res = pipeline.repair(model, trusted, out, arch=arch, labels_file=labels,
                          spec_overrides=_spec_overrides(layout, input_size, value_range, mean, std),
                          policy=policy, defense=defense, settings=settings, rescan=rescan,
                          device=dev, progress=_Progress(quiet), prior_report=from_report)
    if res.status == "repaired":
        code = EXIT_BACKDOOR if (res.rescan or {}).get("still_suspected") else EXIT_PASS
    else:
        code = EXIT_INCONCLUSIVE
    if as_json:
        typer.echo(json.dumps({**res.to_dict(), "exit_code": code}, indent=2, default=str))
    else:
        from scanner.report.terminal import render_repair

        render_repair(res, _console())
    raise typer.Exit(code)


@app.command("init")
def init_cmd(
    path: Path = typer.Argument(Path("scan.toml"), help="Where to write the policy (default ./scan.toml, which `scan` finds automatically)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented policy file with every key at its default.

    Examples:\n
      scan init\n
      scan init rules/release.toml && scan model.onnx --trusted data/ --config rules/release.toml
    """
    from scanner.errors import InputError
    from scanner.io.atomic import write_text_atomic
    from scanner.policy import render_policy_template

    if path.exists() and not force:
        raise InputError(f"{path} exists; not overwriting it", hint="pass --force to replace it")
    if path.is_dir():
        raise InputError(f"{path} is a directory; give a file name")
    write_text_atomic(path, render_policy_template() + "\n")
    _stderr_console().print(f"wrote {path}", highlight=False)


@app.command("selftest")
def selftest_cmd(
    budget: str = BudgetOpt,
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Prove on real data that the gate works: scan the shipped clean and BadNets models.

    Exit 0 only if the clean model passes (with its canary detected) and the backdoored one fails;
    1 if a verdict was wrong; 3 if a scan was inconclusive.

    Examples:\n
      scan selftest\n
      scan selftest --budget thorough --json
    """
    from scanner.device import resolve_device
    from scanner.selftest import run_selftest

    res = run_selftest(budget=budget, seed=seed, device=resolve_device(device),
                       progress=_Progress(quiet),
                       log=None if (quiet or as_json) else
                       (lambda m: _stderr_console().print(m, highlight=False)))
    if as_json:
        typer.echo(json.dumps(res, indent=2, default=str))
    else:
        console = _console()
        for case in res["cases"]:
            mark = "ok  " if case["ok"] else "FAIL"
            console.print(f"{mark} {case['model']}: expected {case['expected']}, got "
                          f"{case['verdict']} ({case['wall_s']:.0f}s)", highlight=False)
            for r in case["reasons"]:
                console.print(f"       {r}", highlight=False)
        console.print("selftest " + ("PASSED" if res["ok"] else "FAILED"), highlight=False)
    raise typer.Exit(res["exit_code"])


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
    log = (lambda msg: None) if quiet else (lambda msg: _stderr_console().print(msg, highlight=False))
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


def _register_subcommands() -> None:
    from scanner.eval.cli import eval_app

    app.add_typer(eval_app, name="eval",
                  help="Evaluation harness: robustness and detectability games, self-poisoning "
                       "hyper-parameter search, paper-shaped tables and plots.")


_register_subcommands()


@app.command("version")
def version_cmd() -> None:
    """Print the scanner's version."""
    typer.echo(__version__)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: map every failure onto the documented exit codes."""
    try:
        rv = app(args=argv, standalone_mode=False)
    except ScanError as exc:
        _stderr_console().print(f"[bold red]error:[/] {exc.message}", highlight=False)
        if exc.hint:
            _stderr_console().print(f"hint: {exc.hint}", highlight=False)
        return _exit(exc.exit_code)
    except typer.Abort:
        return _exit(EXIT_INCONCLUSIVE)
    except SystemExit as exc:  # click's own exits (usage errors are 2, --help is 0)
        return _exit(int(exc.code or 0))
    except Exception as exc:  # noqa: BLE001 - fail closed: never exit 1 on a crash
        if type(exc).__name__ in ("UsageError", "BadParameter", "NoSuchOption", "MissingParameter",
                                  "BadOptionUsage", "BadArgumentUsage", "ClickException"
                                  ) or _is_click_exception(exc):
            exc.show()  # type: ignore[attr-defined]
            return _exit(EXIT_INPUT)
        if type(exc).__name__ == "Exit":
            return _exit(int(getattr(exc, "exit_code", 0)))
        _stderr_console().print(f"[bold red]internal error ({type(exc).__name__}):[/] {exc}",
                                highlight=False)
        _stderr_console().print("the scan did not complete: verdict inconclusive (exit 3)")
        return _exit(EXIT_INCONCLUSIVE)
    return _exit(rv if isinstance(rv, int) else 0)


def _is_click_exception(exc: BaseException) -> bool:
    """Typer vendors click in recent releases; recognise either copy's usage errors."""
    return any(c.__name__ == "ClickException" for c in type(exc).__mro__)


def _exit(code: int) -> int:
    return code


def run() -> None:  # pragma: no cover - thin wrapper for the console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
