"""Reader for the CIFAR-10 JPEG archive in ``../shared/data/cifar10`` (and the shipped sample).

Why JPEG bytes: that is how the data is stored (see its README); decoding here keeps one code path
for the shared archive and the small sample carried in ``fixtures/``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from scanner.errors import InputError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = PROJECT_ROOT / "fixtures" / "cifar10_sample"


def shared_cifar10_dir() -> Path | None:
    """Location of the full CIFAR-10 archive, or None when it is not beside the project.

    ``SCAN_CIFAR10_DIR`` overrides; otherwise ``../shared/data/cifar10`` relative to the project.
    """
    env = os.environ.get("SCAN_CIFAR10_DIR")
    candidates = [Path(env)] if env else []
    candidates += [PROJECT_ROOT.parent / "shared" / "data" / "cifar10"]
    for c in candidates:
        if (c / "test.npz").is_file():
            return c
    return None


def decode_jpeg_npz(path: Path, limit: int | None = None,
                    indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode an npz of concatenated JPEG bytes into uint8 ``N x H x W x 3`` and int64 labels."""
    from PIL import Image

    with np.load(path) as z:
        jpeg, offsets, label = z["jpeg"], z["offsets"], z["label"].astype(np.int64)
    n = len(label)
    idx = np.arange(n) if indices is None else np.asarray(indices)
    if limit is not None:
        idx = idx[:limit]
    imgs = [np.asarray(Image.open(io.BytesIO(jpeg[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
            for i in idx]
    return np.stack(imgs), label[idx]


def load_cifar10(split: str = "test", root: Path | None = None,
                 limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load CIFAR-10 ``train`` (50 000) or ``test`` (10 000) as uint8 NHWC images and labels."""
    root = root or shared_cifar10_dir()
    if root is None:
        raise InputError("CIFAR-10 archive not found (expected ../shared/data/cifar10)",
                         hint="set SCAN_CIFAR10_DIR or use the shipped sample (load_cifar10_sample)")
    if split == "test":
        return decode_jpeg_npz(Path(root) / "test.npz", limit=limit)
    if split == "train":
        xs, ys = [], []
        for k in range(5):
            x, y = decode_jpeg_npz(Path(root) / f"train_{k}.npz")
            xs.append(x)
            ys.append(y)
        x, y = np.concatenate(xs), np.concatenate(ys)
        return (x[:limit], y[:limit]) if limit else (x, y)
    raise InputError(f"unknown CIFAR-10 split {split!r} (train|test)")


def load_cifar10_sample(path: Path = SAMPLE_DIR) -> tuple[np.ndarray, np.ndarray]:
    """The small real CIFAR-10 sample shipped in ``fixtures/`` (works without ``../shared``)."""
    from PIL import Image

    if not (path / "labels.txt").is_file():
        raise InputError(f"shipped CIFAR-10 sample missing: {path}",
                         hint="regenerate with `python -m fixtures.make_sample`")
    names = (path / "labels.txt").read_text().split()
    xs, ys = [], []
    for c, name in enumerate(names):
        for f in sorted((path / name).glob("*.jpg")):
            xs.append(np.asarray(Image.open(f).convert("RGB")))
            ys.append(c)
    return np.stack(xs), np.array(ys, dtype=np.int64)


def to_tensor(x_uint8_nhwc: np.ndarray):
    """uint8 NHWC -> float32 NCHW in [0, 1] (the internal image convention of the package)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(x_uint8_nhwc)).permute(0, 3, 1, 2).float().div_(255.0)
