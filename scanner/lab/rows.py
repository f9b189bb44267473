"""The lab's one row store: an append-only JSONL file that a rerun resumes.

Why one store: the games, the search and the benchmarks all write results that take minutes to
hours per row. Each row carries a ``key`` naming what it measured; a rerun asks ``done(key)``
and skips finished work, so an interrupted run continues where it stopped. Every append is
flushed and fsynced, so a crash costs at most the row being written; a half-written last line
is skipped on reading (counted in ``skipped``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from scanner.errors import InputError


def row_key(game: str, recipe_key: str, method: str, r: float, seed: int) -> str:
    """A game row's resume key: (game, recipe key, defense or detector, r, seed)."""
    return f"{game}|{recipe_key}|{method}|{r:g}|{seed}"


class RowStore:
    """The rows of one JSONL file (read once) and appends to it; see the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict] = []
        self.skipped = 0
        if self.path.is_dir():
            raise InputError(f"results file {self.path} is a directory")
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    self.skipped += 1
                    continue
                if isinstance(row, dict):
                    self.rows.append(row)
        self._keys = {r.get("key") for r in self.rows}

    def done(self, key: str) -> bool:
        """A row with this key is already in the file: its work is finished."""
        return key in self._keys

    def find(self, key: str) -> dict | None:
        """The latest row with this key, or None."""
        return next((r for r in reversed(self.rows) if r.get("key") == key), None)

    def append(self, row: dict) -> None:
        if "key" not in row:
            raise ValueError("result rows need a 'key'")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(jsonable(row), allow_nan=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.rows.append(row)
        self._keys.add(row["key"])


def load_rows(path: str | Path) -> list[dict]:
    """Every row of an existing results file (a missing file is an input error)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"results file not found: {p}",
                         hint="run `scan eval robustness`, `detectability` or a benchmark first")
    return RowStore(p).rows


def latest(rows: Iterable[dict], key: Callable[[dict], Any]) -> list[dict]:
    """One row per ``key(row)``, the last one written: a rerun's row replaces the older one.

    Why beside ``done``: rows written before rows had keys (the committed benchmark files) are
    merged by what identifies them, e.g. the model's file name.
    """
    return list({key(r): r for r in rows}.values())


def jsonable(v):
    """``v`` with numpy scalars, tensors and paths turned into JSON values."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    return v
