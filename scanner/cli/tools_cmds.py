"""``scan inspect``, ``scan init``, ``scan selftest`` and ``scan version``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from scanner import __version__
from scanner.cli.app import app
from scanner.cli.console import Progress, console as make_console, stderr_console
from scanner.cli.options import (ArchOpt, BudgetOpt, DeviceOpt, JsonOpt, LabelsOpt, LayoutOpt,
                                 MeanOpt, PrecisionOpt, QuietOpt, RangeOpt, SeedOpt, SizeOpt,
                                 StdOpt, spec_overrides)


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
        _echo_registry("archs")
        return
    if model is None:
        raise InputError("missing MODEL argument", hint="scan inspect model.onnx")
    from scanner.policy import Policy
    from scanner.scan import build_request, inspect

    request = build_request(Policy(), device=resolve_device(device), arch=arch,
                            labels_file=labels, min_per_class=min_per_class,
                            spec=spec_overrides(layout, input_size, value_range, mean, std))
    res = inspect(model, request, trusted=trusted)
    if as_json:
        typer.echo(json.dumps(res.to_dict(), indent=2, default=str))
    else:
        from scanner.report.terminal import render_inspect

        render_inspect(res, make_console())


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

    if path.is_dir():
        raise InputError(f"{path} is a directory; give a file name")
    if path.exists() and not force:
        raise InputError(f"{path} exists; not overwriting it", hint="pass --force to replace it")
    try:
        write_text_atomic(path, render_policy_template() + "\n")
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}",
                         hint="choose a writable path") from None
    stderr_console().print(f"wrote {path}", highlight=False)


@app.command("selftest")
def selftest_cmd(
    budget: str = BudgetOpt,
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Prove on real data that the gate works: scan the shipped clean and BadNets models.

    Exit 0 only if the clean model passes (with its canary detected) and the backdoored one fails;
    1 if a verdict was wrong; 3 if a scan was inconclusive.

    Examples:\n
      scan selftest\n
      scan selftest --budget thorough --json\n
      scan selftest --precision fp32   # the verdicts must not depend on the loops' arithmetic
    """
    from scanner.device import resolve_device
    from scanner.scan import run_selftest

    res = run_selftest(budget=budget, seed=seed, device=resolve_device(device), precision=precision,
                       progress=Progress(quiet),
                       log=None if (quiet or as_json) else
                       (lambda m: stderr_console().print(m, highlight=False)))
    if as_json:
        typer.echo(json.dumps(res, indent=2, default=str))
    else:
        console = make_console()
        for case in res["cases"]:
            mark = "ok  " if case["ok"] else "FAIL"
            console.print(f"{mark} {case['model']}: expected {case['expected']}, got "
                          f"{case['verdict']} ({case['wall_s']:.0f}s)", highlight=False)
            for r in case["reasons"]:
                console.print(f"       {r}", highlight=False)
        console.print("selftest " + ("PASSED" if res["ok"] else "FAILED"), highlight=False)
    raise typer.Exit(res["exit_code"])


def registries() -> dict:
    """Every registry a name can be looked up in, by the word ``scan list`` takes."""
    from scanner.attacks.base import ATTACKS
    from scanner.defenses.registry import DEFENSES
    from scanner.detectors.registry import DETECTORS
    from scanner.models.registry import ARCHS

    return {"detectors": DETECTORS, "defenses": DEFENSES, "attacks": ATTACKS, "archs": ARCHS}


def _echo_registry(kind: str) -> None:
    from scanner.errors import InputError

    known = registries()
    if kind not in known:
        raise InputError(f"unknown list {kind!r}", hint="choose " + ", ".join(known))
    for e in known[kind]:
        typer.echo(f"{e.name:18s} {e.summary}")


@app.command("list")
def list_cmd(
    kind: str = typer.Argument(..., help="detectors | defenses | attacks | archs"),
) -> None:
    """List the names a policy or flag accepts, from the registries the scanner looks them up in.

    Examples:\n
      scan list detectors\n
      scan list archs
    """
    _echo_registry(kind)


@app.command("version")
def version_cmd() -> None:
    """Print the scanner's version."""
    typer.echo(__version__)
