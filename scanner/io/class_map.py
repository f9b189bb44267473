"""Trusted class labels -> class indices: labels files, folder-name maps, and the listing error.

Why separate: the class map is the one step where a silent mistake turns a clean model into one
that "fails" on every image (or hides a backdoor's target class); keeping the rules in one short
module makes them easy to review. Numeric folder names are never mapped by text sort. Also holds
:func:`list_error`, the :class:`InputError` that names the files or classes at fault, shared by
the loaders in :mod:`scanner.io.data` and the decoders in :mod:`scanner.io.images`.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from scanner.errors import InputError

MAX_LISTED = 10
LABELS_FILE = "labels.txt"


def list_error(msg: str, items: list[str], hint: str | None = None) -> InputError:
    """An :class:`InputError` listing ``items`` at fault (the first MAX_LISTED, then a count)."""
    shown = items[:MAX_LISTED]
    more = f"\n  ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return InputError(msg + ":\n  " + "\n  ".join(shown) + more, hint=hint)


def read_labels_file(path: Path) -> list[str]:
    """One class name per line; line i is class index i. Blank lines and ``#`` comments skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read labels file {path}: {exc}") from exc
    names = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not names:
        raise InputError(f"labels file {path} is empty")
    dup = [n for n, k in Counter(names).items() if k > 1]
    if dup:
        raise InputError(f"labels file {path} repeats class name(s): {', '.join(dup)}")
    return names


def is_int(s: str) -> bool:
    return re.fullmatch(r"[0-9]+", s) is not None


def folder_class_map(folders: list[str], labels: list[str] | None, labels_src: str,
                     model_names: list[str] | None) -> tuple[dict[str, int], str]:
    """Map class folder names to indices; returns the map and a sentence saying how.

    Numeric folder names are refused unless a labels file or the model's class names place them:
    "3" could mean index 3 or the fourth folder in some order, and guessing wrong makes a clean
    model look broken (or hides a backdoor's target class).
    """
    if labels is not None:
        unknown = [f for f in folders if f not in labels]
        if unknown:
            raise list_error(f"class folder(s) not listed in {labels_src}", unknown)
        return ({f: labels.index(f) for f in folders},
                f"Class indices come from {labels_src}: line i of that file is class i.")
    if model_names is not None:
        unknown = [f for f in folders if f not in model_names]
        if not unknown:
            return ({f: model_names.index(f) for f in folders},
                    "Class indices come from the class names stored in the model, matched to the "
                    "folder names: if those names are wrong, so is the class map (a labels.txt "
                    "overrides them).")
    numeric = [f for f in folders if is_int(f)]
    if numeric:
        raise list_error(
            "class folders have numeric names and no labels file says which index each one is "
            "(text order puts '10' before '2', and '3' may not be class 3)", numeric,
            hint=f"add a {LABELS_FILE} (one class name per line, line i = class i) to the folder "
                 "or pass --labels FILE")
    ordered = sorted(folders)
    return ({f: i for i, f in enumerate(ordered)},
            "Class indices come from the alphabetical order of the folder names (the ImageFolder "
            "convention): if the model was trained with another order, clean accuracy is low and "
            f"the scan is refused; add a {LABELS_FILE} to be explicit.")

