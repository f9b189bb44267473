"""Image pixels in: decoding trusted image files and converting arrays to the model's input.

Why separate: this is the part that touches Pillow and pixel formats (modes, sizes, value ranges,
decompression bombs), apart from the class-map and file-listing logic of :mod:`scanner.io.data`.
Every lossy conversion (mode change, resize, dropped alpha) leaves a note saying what it may
cost; every unreadable file is an :class:`InputError` that names it.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from scanner.errors import InputError
from scanner.io.class_map import list_error
from scanner.io.spec import InputSpec


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


def convert_images(paths: list[Path], spec: InputSpec, notes: list[str]) -> np.ndarray:
    """Decode image files as uint8 NHWC in the model's channels and size; notes say what it cost."""
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
        raise list_error(f"{len(too_large)} image(s) are too large to load", too_large,
                          hint="downscale them (every image is resized to the model's "
                               f"{spec.width}x{spec.height} anyway) or remove them")
    if bad:
        raise list_error(f"{len(bad)} file(s) could not be read as images", bad,
                          hint="re-export or remove the damaged files")
    for src, n in resized.items():
        notes.append(_resize_note(n, src, spec))
    for conv, n in modes.items():
        notes.append(_mode_note(conv, n))
    return out


def array_to_tensor(arr: np.ndarray, spec: InputSpec, notes: list[str]) -> torch.Tensor:
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
