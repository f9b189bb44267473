"""Benchmarks' one way to run independent jobs: in this process, or in spawned worker processes.

Why processes (not threads) here: each job is a whole benchmark row with its own torch thread
count and seeds, and a crashed or leaking job must not take the others' numbers with it. Why
"spawn": a forked child inherits torch's OpenMP pool in an undefined state.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable


def run_jobs(fn: Callable[..., Any], work: Iterable[tuple], jobs: int,
             on_result: Callable[[Any], None]) -> None:
    """Call ``fn(*args)`` for every ``args`` in ``work``; ``on_result`` gets each result.

    ``jobs == 1`` runs in order, here. Otherwise ``jobs`` worker processes run them and results
    arrive as they finish (``fn`` must be a module-level function or a ``functools.partial`` of
    one). A job's exception re-raises here.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    work = list(work)
    if jobs == 1:
        for args in work:
            on_result(fn(*args))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
        for fut in as_completed([ex.submit(fn, *args) for args in work]):
            on_result(fut.result())


def find_models(patterns: Iterable[str], jobs: int, threads: int) -> list[str]:
    """The sorted model files the glob ``patterns`` name; ValueError says what is wrong.

    Checked before any work starts, so a typo costs nothing.
    """
    import glob

    if jobs < 1 or threads < 1:
        raise ValueError("--jobs and --threads must be at least 1")
    paths = sorted({p for pat in patterns for p in glob.glob(pat)})
    if not paths:
        raise ValueError("no models found")
    return paths


def read_rows(path: str, key: Callable[[dict], Any]) -> list[dict]:
    """JSON lines written by ``append_row``; a later row with the same ``key`` replaces one."""
    import json
    from pathlib import Path

    rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    return list({key(r): r for r in rows}.values())


def append_row(path: str | None, row: dict) -> None:
    """Append ``row`` to the JSON-lines file ``path`` (nothing when None): rows survive a crash."""
    if path:
        import json

        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
