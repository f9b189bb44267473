"""``scan detect`` (the default command) and ``scan repair``: the gate's two jobs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from scanner.cli.app import app
from scanner.cli.console import Progress, console as make_console, stderr_console
from scanner.cli.options import (ArchOpt, BudgetOpt, ConfigOpt, DeviceOpt, JsonOpt, LabelsOpt,
                                 LayoutOpt, MeanOpt, PrecisionOpt, QuietOpt, RangeOpt,
                                 ReportDirOpt, SeedOpt, SizeOpt, StdOpt, model_uri,
                                 spec_overrides)


def _gate_and_report(res, policy, model: Path, report_dir: Optional[Path], as_json: bool) -> int:
    """Apply waivers, write the reports, render; returns the exit code.

    A report that cannot be written after the scan is an error message, not a lost verdict: the
    verdict is still rendered and decides the exit code.
    """
    from scanner.gate import decide

    decision = decide(res.verdict, res.model.get("sha256", ""), policy)
    doc = res.to_dict()
    doc["gate"] = decision.to_dict()
    doc["waivers"] = decision.waivers
    written = None
    if report_dir is not None:
        from scanner.report.writer import write_reports

        try:
            written = write_reports(doc, Path(report_dir), triggers=res.artifacts.get("triggers"),
                                    examples=res.artifacts.get("trigger_examples"),
                                    model_uri=model_uri(model))
        except OSError as e:
            stderr_console().print(f"[bold red]error:[/] could not write the reports to "
                                    f"{report_dir}: {e.strerror or e}", highlight=False)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        from scanner.report.markdown import append_step_summary, to_markdown

        append_step_summary(to_markdown(doc))
    if as_json:
        from scanner.report.schema import to_report_json

        typer.echo(json.dumps(to_report_json(doc, None), indent=2, default=str))
    else:
        from scanner.report.terminal import render_scan

        console = make_console()
        render_scan(res, console)
        for note in decision.notes:
            console.print(f"  gate: {note}", highlight=False)
        if written is not None:
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

    from scanner.device import resolve_device
    from scanner.policy import find_policy
    from scanner.scan import build_request, detect

    policy = find_policy(config)
    request = build_request(policy, device=resolve_device(device), seed=seed,
                            budget_level=budget, method=method, canary=not no_canary,
                            canary_mode=canary_mode, precision=precision, arch=arch,
                            labels_file=labels,
                            spec=spec_overrides(layout, input_size, value_range, mean, std))
    if report_dir is not None:  # before minutes of work, not after them
        from scanner.io.atomic import check_writable_dir

        check_writable_dir(report_dir, "--report-dir")
    torch.manual_seed(seed)
    res = detect(model, trusted, request, progress=Progress(quiet))
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

    from scanner.device import resolve_device
    from scanner.policy import find_policy
    from scanner.scan import build_request, exit_code, repair
    from scanner.scan.repair_job import check_out_path

    policy = find_policy(config)
    request = build_request(policy, device=resolve_device(device), seed=seed,
                            budget_level=budget, precision=precision, defense=defense,
                            max_cda_drop=max_cda_drop, arch=arch, labels_file=labels,
                            spec=spec_overrides(layout, input_size, value_range, mean, std))
    check_out_path(model, out)  # before minutes of work, not after them
    torch.manual_seed(seed)
    res = repair(model, trusted, out, request, rescan=rescan, progress=Progress(quiet),
                 prior_report=from_report)
    suspected = (res.rescan or {}).get("still_suspected")
    code = exit_code("inconclusive" if res.status != "repaired"
                     else "backdoor" if suspected else "pass")
    if as_json:
        typer.echo(json.dumps({**res.to_dict(), "exit_code": code}, indent=2, default=str))
    else:
        from scanner.report.terminal import render_repair

        render_repair(res, make_console())
    raise typer.Exit(code)
