"""Trusted data in: an image folder, a CSV of ``path,label`` or an ``.npz`` with ``x``, ``y``.

Why so strict: a wrong class->index map silently turns a clean model into one that "fails" on
every image, and a backdoored one into noise. Numeric folder names are never mapped by text sort;
every problem is an :class:`InputError` (exit 2) that names the files or classes at fault.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from scanner.errors import InputError
from scanner.io.spec import InputSpec

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
MAX_LISTED = 10
DEFAULT_MIN_PER_CLASS = 5
LABELS_FILE = "labels.txt"


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


def _list_error(msg: str, items: list[str], hint: str | None = None) -> InputError:
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


def _is_int(s: str) -> bool:
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
            raise _list_error(f"class folder(s) not listed in {labels_src}", unknown)
        return ({f: labels.index(f) for f in folders},
                f"Class indices come from {labels_src}: line i of that file is class i.")
    if model_names is not None:
        unknown = [f for f in folders if f not in model_names]
        if not unknown:
            return ({f: model_names.index(f) for f in folders},
                    "Class indices come from the class names stored in the model, matched to the "
                    "folder names: if those names are wrong, so is the class map (a labels.txt "
                    "overrides them).")
    numeric = [f for f in folders if _is_int(f)]
    if numeric:
        raise _list_error(
            "class folders have numeric names and no labels file says which index each one is "
            "(text order puts '10' before '2', and '3' may not be class 3)", numeric,
            hint=f"add a {LABELS_FILE} (one class name per line, line i = class i) to the folder "
                 "or pass --labels FILE")
    ordered = sorted(folders)
    return ({f: i for i, f in enumerate(ordered)},
            "Class indices come from the alphabetical order of the folder names (the ImageFolder "
            "convention): if the model was trained with another order, clean accuracy is low and "
            f"the scan is refused; add a {LABELS_FILE} to be explicit.")


# What each Pillow mode conversion loses, so the note can say what it may cost.
_MODE_COSTS = {
    ("L", "RGB"): "grayscale to RGB (the grey value copied to all three channels): a model trained "
                  "on colour images sees no colour in them, which can lower clean accuracy",
    ("RGB", "L"): "RGB to grayscale: their colour is lost",
    ("RGBA", "RGB"): "RGBA to RGB: the alpha channel was dropped, so transparent areas show "
                     "whatever colour is stored under them",
    ("P", "RGB"): "palette to RGB: nothing is lost",
}


def _mode_note(conv: tuple[str, str], n: int) -> str:
    src, dst = conv
    what = _MODE_COSTS.get(conv, f"mode {src} to {dst}: Pillow's conversion may change their "
                                 "colours")
    return f"Converted {n} image(s) from {what}."


def _resize_note(n: int, src: str, spec: InputSpec) -> str:
    return (f"Resized {n} image(s) from {src} to the model's {spec.width}x{spec.height} "
            "(bilinear): fine detail, including a small trigger patch, is blurred or lost.")


def _too_large_reason(exc: Exception) -> str:
    """Pillow's decompression-bomb message, restated as the image's pixels vs the limit."""
    from PIL import Image

    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    limit = Image.MAX_IMAGE_PIXELS
    return (f"too large: {pixels}, over the limit of {limit:,} pixels that Pillow decodes "
            "(its guard against decompression bombs)" if limit else f"too large: {pixels}")


def _read_image(p: Path, mode: str, size: tuple[int, int], resized: Counter,
                modes: Counter) -> np.ndarray:
    """One image as uint8 HxW(xC) in ``mode`` at ``size``; Pillow's errors propagate."""
    import warnings

    from PIL import Image

    # Pillow only warns between 1x and 2x its pixel limit; a warning would still decode the
    # whole bomb, so it is raised like the error above 2x.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(p) as im:
            im.load()
            if im.mode != mode:
                modes[(im.mode, mode)] += 1
                im = im.convert(mode)
            if im.size != size:
                resized[f"{im.size[0]}x{im.size[1]}"] += 1
                im = im.resize(size, Image.BILINEAR)
            return np.asarray(im)


def _convert_images(paths: list[Path], spec: InputSpec, notes: list[str]) -> np.ndarray:
    from PIL import Image

    mode = "L" if spec.channels == 1 else "RGB"
    size = (spec.width, spec.height)
    out = np.empty((len(paths), spec.height, spec.width, spec.channels), dtype=np.uint8)
    bad: list[str] = []
    too_large: list[str] = []
    resized: Counter = Counter()
    modes: Counter = Counter()
    for i, p in enumerate(paths):
        try:
            arr = _read_image(p, mode, size, resized, modes)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            too_large.append(f"{p}: {_too_large_reason(exc)}")
            continue
        # Pillow reports damaged files as OSError, SyntaxError, ValueError or EOFError
        # depending on the format and where decoding stops.
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            bad.append(f"{p}: cannot be decoded as an image ({type(exc).__name__}: {exc})")
            continue
        out[i] = arr.reshape(spec.height, spec.width, spec.channels)
    if too_large:
        raise _list_error(f"{len(too_large)} image(s) are too large to load", too_large,
                          hint="downscale them (every image is resized to the model's "
                               f"{spec.width}x{spec.height} anyway) or remove them")
    if bad:
        raise _list_error(f"{len(bad)} file(s) could not be read as images", bad,
                          hint="re-export or remove the damaged files")
    for src, n in resized.items():
        notes.append(_resize_note(n, src, spec))
    for conv, n in modes.items():
        notes.append(_mode_note(conv, n))
    return out


def _array_to_tensor(arr: np.ndarray, spec: InputSpec, notes: list[str]) -> torch.Tensor:
    """Array of images (NHWC or NCHW, uint8 or float) -> float NCHW [0,1] at the model's size."""
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise InputError(f"npz 'x' must be 3-D or 4-D, got shape {arr.shape}")
    if arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3, 4):
        arr = arr.transpose(0, 3, 1, 2)
    t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    else:
        t = t.float()
        lo, hi = float(t.min()), float(t.max())
        if hi > 1.0 + 1e-6:
            if hi <= 255.0 and lo >= 0.0:
                t = t / 255.0
                notes.append("Scaled the npz float pixels from [0, 255] to [0, 1]; nothing is lost.")
            else:
                raise InputError(f"npz 'x' values span [{lo:g}, {hi:g}]; expected [0,1] or [0,255]")
        elif lo < -1e-6:
            raise InputError(f"npz 'x' has negative values (min {lo:g}); pass raw pixels, not normalised ones")
    if t.shape[1] == 4:
        t = t[:, :3]
        notes.append("Dropped the npz images' alpha channel: transparent areas show whatever "
                      "colour is stored under them.")
    if t.shape[1] != spec.channels:
        if t.shape[1] == 3 and spec.channels == 1:
            t = (t * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
            notes.append(_mode_note(("RGB", "L"), t.shape[0]))
        elif t.shape[1] == 1 and spec.channels == 3:
            t = t.expand(-1, 3, -1, -1).contiguous()
            notes.append(_mode_note(("L", "RGB"), t.shape[0]))
        else:
            raise InputError(f"npz images have {t.shape[1]} channels; the model takes {spec.channels}")
    if tuple(t.shape[2:]) != (spec.height, spec.width):
        notes.append(_resize_note(t.shape[0], f"{t.shape[3]}x{t.shape[2]}", spec))
        t = torch.nn.functional.interpolate(t, size=(spec.height, spec.width), mode="bilinear",
                                            align_corners=False, antialias=True).clamp_(0, 1)
    return t


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
        raise _list_error(f"{len(skipped)} file(s) in {root} are not images", skipped)
    if not paths:
        raise InputError(f"trusted data folder {root} has class folders but no images")
    names = labels if labels is not None else (model_names or
                                               [k for k, _ in sorted(cmap.items(), key=lambda kv: kv[1])])
    return _convert_images(paths, spec, notes), np.array(ys, dtype=np.int64), names


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
        if _is_int(lab) or (lab.startswith("-") and _is_int(lab[1:])):
            ys.append(int(lab))
        elif labels is not None and lab in labels:
            ys.append(labels.index(lab))
        else:
            bad.append(f"{rel}: label {lab!r} is not an index" + ("" if labels is None else " or a known class name"))
            continue
        paths.append(p)
    if bad:
        raise _list_error(f"{len(bad)} CSV row(s) in {path} are unusable", bad)
    notes.append("Class indices come from the CSV's label column (numbers are taken as indices, "
                 "names are looked up in the labels file).")
    return _convert_images(paths, spec, notes), np.array(ys, dtype=np.int64), labels


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
        x = _array_to_tensor(arr, spec, notes)
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
        raise _list_error(f"too few trusted images: every class needs at least {min_per_class}", short)
    notes.append(f"Loaded {len(y)} image(s) for {len(counts)} class(es) as "
                 f"{spec.channels}x{spec.height}x{spec.width}.")
    return TrustedData(x=x.contiguous(), y=torch.from_numpy(y), class_names=names,
                       source=str(path), notes=notes)
