"""Trusted data in: an image folder, a CSV of ``path,label`` or an ``.npz`` with ``x``, ``y``.

Why so strict: a wrong class->index map silently turns a clean model into one that "fails" on
every image, and a backdoored one into noise. Numeric folder names are never mapped by text sort;
every problem is an :class:`InputError` (exit 2) that names the files or classes at fault.

This module finds the images and labels and checks the result (class counts, label range); the
class->index rules live in :mod:`scanner.io.class_map` and the pixel decoding and conversion in
:mod:`scanner.io.images`.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from scanner.errors import InputError
from scanner.io.class_map import (LABELS_FILE, MAX_LISTED, folder_class_map, is_int, list_error,
                                  read_labels_file)
from scanner.io.images import array_to_tensor, convert_images
from scanner.io.spec import InputSpec

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
DEFAULT_MIN_PER_CLASS = 5


@dataclass
class TrustedData:
    """Images as float32 NCHW in [0, 1], already in the model's channels and size."""

    x: torch.Tensor
    y: torch.Tensor
    class_names: list[str] | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx: torch.Tensor | np.ndarray) -> "TrustedData":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return TrustedData(self.x[idx], self.y[idx], self.class_names, self.source, list(self.notes))

    def split(self, holdout: float = 0.2, seed: int = 0) -> tuple["TrustedData", "TrustedData"]:
        """Deterministic stratified split into a tuning part and a held-out part."""
        if not 0.0 < holdout < 1.0:
            raise InputError(f"held-out fraction must be in (0, 1), got {holdout}")
        g = np.random.default_rng(seed)
        y = self.y.numpy()
        tune, held = [], []
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            idx = idx[g.permutation(len(idx))]
            k = int(round(len(idx) * holdout))
            k = min(max(k, 1), len(idx) - 1) if len(idx) > 1 else 0
            held.extend(idx[:k].tolist())
            tune.extend(idx[k:].tolist())
        return self.subset(np.sort(tune)), self.subset(np.sort(held))

    def class_counts(self) -> dict[int, int]:
        return dict(sorted(Counter(self.y.tolist()).items()))


def _load_folder(root: Path, spec: InputSpec, labels: list[str] | None, labels_src: str,
                 model_names: list[str] | None, notes: list[str]):
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        loose = [p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        if loose:
            raise InputError(f"{root} holds images but no class subfolders",
                             hint="put each class's images in a subfolder named after the class")
        raise InputError(f"trusted data folder {root} is empty")
    cmap, how = folder_class_map(folders, labels, labels_src, model_names)
    notes.append(how)
    paths: list[Path] = []
    ys: list[int] = []
    skipped: list[str] = []
    for f in folders:
        for p in sorted((root / f).rglob("*")):
            if not p.is_file() or p.name.startswith("."):
                continue
            if p.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(p)
                ys.append(cmap[f])
            else:
                skipped.append(str(p))
    if skipped:
        raise list_error(f"{len(skipped)} file(s) in {root} are not images", skipped)
    if not paths:
        raise InputError(f"trusted data folder {root} has class folders but no images")
    names = labels if labels is not None else (model_names or
                                               [k for k, _ in sorted(cmap.items(), key=lambda kv: kv[1])])
    return convert_images(paths, spec, notes), np.array(ys, dtype=np.int64), names


def _load_csv(path: Path, spec: InputSpec, labels: list[str] | None, notes: list[str]):
    rows: list[tuple[str, str]] = []
    with open(path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.reader(f)):
            if not row or row[0].strip().startswith("#"):
                continue
            if len(row) < 2:
                raise InputError(f"{path}:{i + 1}: expected 'path,label', got {','.join(row)!r}")
            if i == 0 and row[0].strip().lower() in ("path", "file", "filename", "image"):
                continue
            rows.append((row[0].strip(), row[1].strip()))
    if not rows:
        raise InputError(f"CSV {path} lists no images")
    paths, ys, bad = [], [], []
    for rel, lab in rows:
        p = (path.parent / rel) if not Path(rel).is_absolute() else Path(rel)
        if not p.is_file():
            bad.append(f"{rel}: file not found")
            continue
        if is_int(lab) or (lab.startswith("-") and is_int(lab[1:])):
            ys.append(int(lab))
        elif labels is not None and lab in labels:
            ys.append(labels.index(lab))
        else:
            bad.append(f"{rel}: label {lab!r} is not an index" + ("" if labels is None else " or a known class name"))
            continue
        paths.append(p)
    if bad:
        raise list_error(f"{len(bad)} CSV row(s) in {path} are unusable", bad)
    notes.append("Class indices come from the CSV's label column (numbers are taken as indices, "
                 "names are looked up in the labels file).")
    return convert_images(paths, spec, notes), np.array(ys, dtype=np.int64), labels


def _load_npz(path: Path, spec: InputSpec, notes: list[str]):
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z or "y" not in z:
                raise InputError(f"{path} must contain arrays 'x' (images) and 'y' (labels); has {list(z.keys())}")
            x, y = z["x"], z["y"]
    except ValueError as exc:  # object arrays need pickle: refused
        raise InputError(f"{path}: {exc} (pickled object arrays are refused)") from exc
    if len(x) != len(y):
        raise InputError(f"{path}: {len(x)} images but {len(y)} labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{path}: 'y' must hold integer class indices, got {y.dtype}")
    notes.append("Class indices are the npz's 'y' array as stored.")
    return x, y.astype(np.int64).reshape(-1), None


def load_trusted(path: str | Path, spec: InputSpec, num_classes: int, *,
                 labels_file: str | Path | None = None, model_class_names: list[str] | None = None,
                 min_per_class: int = DEFAULT_MIN_PER_CLASS) -> TrustedData:
    """Load and validate trusted data for a model with ``num_classes`` outputs."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"trusted data not found: {path}")
    notes: list[str] = []
    labels: list[str] | None = None
    labels_src = ""
    if labels_file is not None:
        labels, labels_src = read_labels_file(Path(labels_file)), str(labels_file)
    elif path.is_dir() and (path / LABELS_FILE).is_file():
        labels, labels_src = read_labels_file(path / LABELS_FILE), f"{path / LABELS_FILE}"
    if labels is not None and len(labels) != num_classes:
        raise InputError(f"{labels_src} lists {len(labels)} classes but the model has {num_classes} outputs")

    if path.is_dir():
        x_u8, y, names = _load_folder(path, spec, labels, labels_src, model_class_names, notes)
        x = torch.from_numpy(x_u8).permute(0, 3, 1, 2).float().div_(255.0)
    elif path.suffix.lower() == ".csv":
        x_u8, y, names = _load_csv(path, spec, labels, notes)
        x = torch.from_numpy(x_u8).permute(0, 3, 1, 2).float().div_(255.0)
    elif path.suffix.lower() == ".npz":
        arr, y, names = _load_npz(path, spec, notes)
        x = array_to_tensor(arr, spec, notes)
    else:
        raise InputError(f"unsupported trusted data {path}",
                         hint="use a folder of class subfolders, a CSV of path,label, or an .npz with x, y")
    if len(y) == 0:
        raise InputError(f"trusted data {path} is empty")
    out_of_range = sorted({int(v) for v in y if v < 0 or v >= num_classes})
    if out_of_range:
        raise InputError(f"label(s) {out_of_range[:MAX_LISTED]} out of range for a model with "
                         f"{num_classes} classes (valid: 0..{num_classes - 1})")
    counts = Counter(y.tolist())
    short = [f"class {c}{' (' + names[c] + ')' if names and c < len(names) else ''}: "
             f"{counts.get(c, 0)} image(s)" for c in range(num_classes) if counts.get(c, 0) < min_per_class]
    if short:
        raise list_error(f"too few trusted images: every class needs at least {min_per_class}", short)
    notes.append(f"Loaded {len(y)} image(s) for {len(counts)} class(es) as "
                 f"{spec.channels}x{spec.height}x{spec.width}.")
    return TrustedData(x=x.contiguous(), y=torch.from_numpy(y), class_names=names,
                       source=str(path), notes=notes)
