"""PNG pictures of reversed triggers, for the HTML report and the triggers/ folder.

Why: a reviewer decides fastest by looking: a real backdoor's trigger is a small, crisp patch,
a clean class's trigger is diffuse noise. A trigger on its own (a few pixels on black) looks like
a broken image, so the scan also supplies each trigger stamped on a trusted image, before and
after, with the model's prediction for each. Images are tiny (32x32 for CIFAR), so they are
upscaled with nearest-neighbour by an integer factor to stay crisp and visible. Only reads
``TriggerSet.classes`` / ``TriggerSet.image(i)`` and the example dicts; torch is not imported.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

UPSCALE = 4
EXAMPLE_MIN_PX = 128  # examples are upscaled to at least this many pixels on their long side
EXAMPLE_MAX_SCALE = 8


def to_png(chw: Any, scale: int = UPSCALE) -> bytes:
    """PNG bytes for one [C,H,W] image in [0,1] (C = 1 or 3; a tensor or an array)."""
    arr = chw.detach().cpu().float().numpy() if hasattr(chw, "detach") else np.asarray(chw)
    arr = np.nan_to_num(np.asarray(arr, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    if arr.ndim == 2:
        arr = arr[None]
    arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if arr.shape[0] == 1:
        img = Image.fromarray(arr[0])  # 2-D uint8: mode "L"
    else:
        img = Image.fromarray(np.ascontiguousarray(arr[:3].transpose(1, 2, 0)))  # "RGB"
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def trigger_pngs(triggers: Any | None, scale: int = UPSCALE) -> dict[int, bytes]:
    """Class index -> PNG bytes for every trigger in a TriggerSet; {} when ``triggers`` is None."""
    if triggers is None:
        return {}
    return {int(c): to_png(triggers.image(i), scale) for i, c in enumerate(triggers.classes)}


@dataclass(frozen=True)
class ExamplePngs:
    """One class's reversed trigger on a trusted image: PNGs before/after and the predictions."""

    cls: int
    before: bytes
    after: bytes
    pred_before: int
    pred_after: int


def example_scale(shape: tuple[int, ...]) -> int:
    """Integer nearest-neighbour factor that makes a (C,)H,W image about EXAMPLE_MIN_PX wide."""
    side = max(int(shape[-1]), int(shape[-2]), 1)
    return max(1, min(EXAMPLE_MAX_SCALE, -(-EXAMPLE_MIN_PX // side)))


def example_pngs(examples: Iterable[Mapping[str, Any]] | None) -> dict[int, ExamplePngs]:
    """Class index -> before/after PNGs for the scan's ``trigger_examples``; {} when None.

    Each example is ``{"class", "before", "after", "pred_before", "pred_after"}`` with the
    images as (C,H,W) tensors or arrays in [0, 1].
    """
    out: dict[int, ExamplePngs] = {}
    for ex in examples or ():
        cls = int(ex["class"])
        scale = example_scale(tuple(ex["before"].shape))
        out[cls] = ExamplePngs(cls, to_png(ex["before"], scale), to_png(ex["after"], scale),
                               int(ex["pred_before"]), int(ex["pred_after"]))
    return out
