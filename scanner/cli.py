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


def _stderr_console() -> Console:
    return Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")))


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

        render_inspect(res, Console(no_color=bool(os.environ.get("NO_COLOR"))))


class _Progress:
    """Progress on stderr: a Rich bar on a terminal, plain periodic lines in CI logs."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, step: int, total: int, info: dict) -> None:
        import time

        if self.quiet:
            return
        now = time.monotonic()
        if step != total and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        extra = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in info.items() if not isinstance(v, (list, dict)))
        end = "\r" if self.tty and step != total else "\n"
        sys.stderr.write(f"  step {step}/{total} {extra}\033[K{end}" if self.tty
                         else f"  step {step}/{total} {extra}\n")
        sys.stderr.flush()


@app.command("detect")
def detect_cmd(
    model: Path = typer.Argument(..., help="Model file: .onnx, or .safetensors with --arch."),
    trusted: Path = typer.Option(..., "--trusted", help="Trusted data: folder of class folders, CSV path,label, or npz x,y."),
    arch: Optional[str] = ArchOpt,
    labels: Optional[Path] = LabelsOpt,
    config: Optional[Path] = typer.Option(None, "--config", help="Policy TOML (default: rules/default.toml)."),
    method: Optional[str] = typer.Option(None, "--method", help="mask (default: reversed-trigger mask-norm outlier test), nc (Neural Cleanse as published) or cti (Calibrated Trigger Inversion, experimental); default from the policy."),
    budget: str = typer.Option("standard", "--budget", help="fast|standard|thorough compute budget."),
    no_canary: bool = typer.Option(False, "--no-canary", help="Skip the sensitivity canary (a pass is then unverified)."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed repeats the scan on the same machine."),
    layout: Optional[str] = LayoutOpt, input_size: Optional[str] = SizeOpt,
    value_range: Optional[str] = RangeOpt, mean: Optional[str] = MeanOpt, std: Optional[str] = StdOpt,
    device: str = DeviceOpt,
    as_json: bool = typer.Option(False, "--json", help="Print only the JSON report on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Scan a model for a backdoor (the default command: `scan MODEL --trusted DIR`).

    Exit 0 pass, 1 backdoor suspected, 2 bad input, 3 inconclusive.

    Examples:\n
      scan model.onnx --trusted data/\n
      scan weights.safetensors --arch resnet20 --trusted data.npz --json
    """
    import torch

    from scanner import pipeline
    from scanner.device import resolve_device
    from scanner.errors import EXIT_BACKDOOR, EXIT_PASS, InputError
    from scanner.policy import load_policy

    if method is not None and method not in ("mask", "nc", "cti"):
        raise InputError(f"--method must be mask, nc or cti, got {method!r}")
    dev = resolve_device(device)
    torch.manual_seed(seed)
    settings = pipeline.ScanSettings(seed=seed, budget_level=budget, method=method,
                                     canary=not no_canary)
    res = pipeline.detect(model, trusted, arch=arch, labels_file=labels,
                          spec_overrides=_spec_overrides(layout, input_size, value_range, mean, std),
                          policy=load_policy(config), settings=settings, device=dev,
                          progress=_Progress(quiet or as_json))
    if as_json:
        typer.echo(json.dumps(res.to_dict(), indent=2, default=str))
    else:
        from scanner.report.terminal import render_scan

        render_scan(res, Console(stderr=False, no_color=bool(os.environ.get("NO_COLOR"))))
    code = {pipeline.VERDICT_PASS: EXIT_PASS, pipeline.VERDICT_BACKDOOR: EXIT_BACKDOOR}.get(
        res.verdict, EXIT_INCONCLUSIVE)
    raise typer.Exit(code)


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
