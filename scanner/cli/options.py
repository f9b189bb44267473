"""Flags shared by several commands, and their parsing into request values."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def spec_overrides(layout: Optional[str], input_size: Optional[str], value_range: Optional[str],
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

ConfigOpt = typer.Option(None, "--config", help="Policy TOML. Default: ./scan.toml, else [tool.scan] in pyproject.toml (searched up to the repository root), else built-in defaults (rules/default.toml).")
BudgetOpt = typer.Option("standard", "--budget", help="fast|standard|thorough compute budget (numbers per device in the policy).")
PrecisionOpt = typer.Option("auto", "--precision", help="auto|fp32|bf16: arithmetic of the optimisation loops (repair, trigger inversion, canary implant). bf16 autocast is about 2x faster on a CPU with native bf16 (auto picks it there); accuracy and trigger-success measurements always run in float32.")
SeedOpt = typer.Option(0, "--seed", help="Seed: the same seed repeats the scan on the same machine.")
JsonOpt = typer.Option(False, "--json", help="Print only the JSON report on stdout (progress and messages go to stderr).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress output.")
ReportDirOpt = typer.Option(None, "--report-dir", help="Write report.json, report.sarif, report.junit.xml, report.md, report.html and triggers/*.png here.")


def model_uri(model: Path) -> str:
    """The model's path relative to the repository (SARIF locations must be repo-relative)."""
    base = Path(os.environ.get("GITHUB_WORKSPACE") or Path.cwd()).resolve()
    try:
        return Path(model).resolve().relative_to(base).as_posix()
    except ValueError:
        return Path(model).as_posix()
