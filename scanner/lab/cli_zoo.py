"""``scan eval zoo``: list or train the wild zoo (:mod:`scanner.lab.wild_zoo`)."""

from __future__ import annotations

from typing import Optional

import typer

from scanner.errors import InputError
from scanner.lab.app import QuietOpt, eval_app, make_log

PARTS = ("dev", "test", "all")


def train_one(recipe, threads: int) -> dict:
    """Train (or find in the cache) one zoo model; a row of what was measured at training."""
    import torch

    from scanner.attacks.recipe import cached_model, read_sidecar
    from scanner.lab.wild_zoo import cache_dir

    from scanner.errors import InconclusiveError, InputError

    torch.set_num_threads(threads)
    try:
        path = cached_model(recipe, cache_dir())
    except (InconclusiveError, InputError) as exc:  # e.g. a model that trained into NaN
        return {"name": recipe.name, "error": str(exc)}
    side = read_sidecar(path)
    return {"name": recipe.name, "path": str(path), "cda": side["cda"], "asr": side["asr"],
            "train_s": side.get("train_seconds")}


@eval_app.command("zoo", short_help="List or train the wild zoo (7 families, 2 recipes, 7 trigger kinds).")
def zoo_cmd(
    part: str = typer.Option("all", "--part", help="dev|test|all: which part of the fixed split."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated model names."),
    train: bool = typer.Option(False, "--train", help="Train the models not in the cache yet (otherwise only list)."),
    jobs: int = typer.Option(2, "--jobs", help="Models trained at once, one process each."),
    threads: int = typer.Option(1, "--threads", help="torch threads per training process."),
    quiet: bool = QuietOpt,
) -> None:
    """List the wild zoo's models (family, part, trigger, cached or not), or train them.

    Models are cached under $XDG_CACHE_HOME/backdoor-scanner/zoo by recipe hash; a rerun trains
    only what is missing. The dev/test split is fixed in scanner/lab/wild_zoo.py.

    Examples:\n
      scan eval zoo --part dev\n
      scan eval zoo --train --jobs 2 --threads 1
    """
    from scanner.lab.jobs import run_jobs
    from scanner.lab.wild_zoo import cache_dir, select, wild_zoo

    if part not in PARTS:
        raise InputError(f"--part must be one of {', '.join(PARTS)}, got {part!r}")
    if jobs < 1 or threads < 1:
        raise InputError("--jobs and --threads must be at least 1")
    models = select(wild_zoo(), part, only)
    if not models:
        raise InputError("no zoo model matches", hint="see `scan eval zoo` for the names")
    root = cache_dir()

    def cached(z) -> bool:
        return (root / z.recipe.key() / f"{z.recipe.name}.json").is_file()

    if train:
        log = make_log(quiet)
        todo = sorted((z for z in models if not cached(z)), key=lambda z: z.part != "dev")
        log(f"zoo: {len(models) - len(todo)} cached, {len(todo)} to train into {root}")
        done = [0]

        def on_row(row: dict) -> None:
            done[0] += 1
            if "error" in row:  # one failed model does not stop the zoo; it stays untrained
                log(f"zoo: [{done[0]}/{len(todo)}] {row['name']} FAILED: {row['error']}")
                return
            asr = "-" if row["asr"] is None else f"{row['asr']:.3f}"
            log(f"zoo: [{done[0]}/{len(todo)}] {row['name']} CDA {row['cda']:.3f} ASR {asr} "
                f"({row['train_s']:.0f}s)")

        run_jobs(train_one, [(z.recipe, threads) for z in todo], jobs, on_row)
    for z in models:
        line = f"{z.recipe.name:28s} {z.part:5s} {z.family:12s} {z.recipe.arch:16s} " \
               f"{z.trigger or 'clean':10s} m={z.recipe.m:<5d}"
        if cached(z):
            import json

            side = json.loads((root / z.recipe.key() / f"{z.recipe.name}.json").read_text())
            asr = "-" if side["asr"] is None else f"{side['asr']:.3f}"
            line += f" CDA {side['cda']:.3f} ASR {asr}"
        else:
            line += " (not trained)"
        typer.echo(line)
