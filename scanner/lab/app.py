"""The ``scan eval`` Typer app and what its commands share: options, logging, device set-up.

Registered by the main CLI as a sub-app (``app.add_typer(eval_app, name="eval")``); the command
modules (:mod:`scanner.lab.cli_games`, :mod:`scanner.lab.cli_results`,
:mod:`scanner.lab.cli_bench`) add their commands to it when imported (:mod:`scanner.lab.cli`).
Errors are :class:`scanner.errors.InputError` (exit 2) like every other command; progress goes
to stderr, tables to stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import typer

from scanner.errors import InputError

eval_app = typer.Typer(
    no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help="Evaluate attacks and defenses the way the paper does: robustness (Alg. 1), "
         "detectability (Alg. 2), defense hyper-parameter search by self-poisoning (Sec. 5.3), "
         "Table-2/Table-3 shaped tables and Fig. 5/6 shaped plots from the results; and the "
         "benchmarks behind RESULTS.md (bench-detect, bench-repair, bench-precision, "
         "attack-table).\n\n"
         "Games train on CIFAR-10 from ../shared/data/cifar10 (or $SCAN_CIFAR10_DIR); models are "
         "cached by recipe hash and results are appended to a JSONL file, so an interrupted run "
         "resumes where it stopped.")

DeviceOpt = typer.Option("auto", "--device", help="auto|cpu|cuda.")
ThreadsOpt = typer.Option(None, "--threads", help="torch CPU threads (keep low on a shared machine).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress output.")
HoldoutOpt = typer.Option(0.2, "--holdout", help="Share of the trusted images held out for the defense's / detector's own checks.")
DeltaOpt = typer.Option(0.02, "--max-cda-drop", help="Delta: the largest clean-accuracy drop (fraction) a repair may cost.")


def make_log(quiet: bool) -> Callable[[str], None]:
    """Progress lines to stderr, or nothing with ``--quiet``."""
    if quiet:
        return lambda msg: None
    return lambda msg: typer.echo(msg, err=True)


def setup_device(device: str, threads: Optional[int]):
    """Apply ``--threads`` and resolve ``--device`` (auto = CUDA when available)."""
    import torch

    from scanner.device import resolve_device

    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads must be positive, got {threads}")
        torch.set_num_threads(threads)
    return resolve_device(device)


def results_path(out: Path, flag: str = "--out") -> Path:
    """A results file must be JSONL (the row store's format)."""
    if out.suffix.lower() != ".jsonl":
        raise InputError(f"{flag} must be a .jsonl file, got {out.name!r}")
    return out
