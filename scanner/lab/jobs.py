"""The benchmarks' one way to run independent jobs: in this process, or in spawned workers.

Why processes (not threads) here: each job is a whole benchmark row with its own torch thread
count and seeds, and a crashed or leaking job must not take the others' numbers with it. Why
"spawn": a forked child inherits torch's OpenMP pool in an undefined state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

from scanner.errors import InputError

if TYPE_CHECKING:
    from scanner.lab.rows import RowStore


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
    """The sorted model files the glob ``patterns`` name.

    Checked before any work starts, so a typo costs nothing (an input error, exit 2).
    """
    import glob

    if jobs < 1 or threads < 1:
        raise InputError("--jobs and --threads must be at least 1")
    paths = sorted({p for pat in patterns for p in glob.glob(pat)})
    if not paths:
        raise InputError("no models found", hint="check the --models glob patterns")
    return paths


def run_rows(fn: Callable[..., dict], work: Iterable[tuple[str, tuple]], jobs: int,
             store: "RowStore | None", on_row: Callable[[dict], None] = lambda row: None
             ) -> tuple[list[dict], int]:
    """The benchmarks' resumable loop: one row per ``(key, args)`` of ``work``.

    A key already in ``store`` is not run again: its row comes from the file. The others run
    through :func:`run_jobs`; each new row (which must carry the same ``key``, computed by the
    job itself) is appended to ``store`` as soon as it exists and handed to ``on_row``. Returns
    (every row, how many came from the file).
    """
    rows: list[dict] = []
    todo = []
    for key, args in work:
        done = store.find(key) if store is not None else None
        if done is None:
            todo.append(args)
        else:
            rows.append(done)
    skipped = len(rows)

    def record(row: dict) -> None:
        rows.append(row)
        if store is not None:
            store.append(row)
        on_row(row)

    run_jobs(fn, todo, jobs, record)
    return rows, skipped
