"""``scan eval tables | plots``: paper-shaped tables and figures from a results file."""

from __future__ import annotations

from pathlib import Path

import typer

from scanner.errors import InputError
from scanner.lab.app import eval_app


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
    from scanner.lab.rows import load_rows
    from scanner.lab.tables import table2, table3

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
    from scanner.lab.plots import detectability_plots, pyplot, tradeoff_plots
    from scanner.lab.rows import load_rows

    pyplot()  # a clear error before reading anything
    rows = load_rows(results)
    paths = tradeoff_plots(rows, out_dir, dpi=dpi) + detectability_plots(rows, out_dir, dpi=dpi)
    if not paths:
        raise InputError(f"{results}: no robustness or detectability rows to plot")
    for p in paths:
        typer.echo(str(p))
