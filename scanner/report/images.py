"""PNG pictures of reversed triggers, for the HTML report and the triggers/ folder.

Why: a reviewer decides fastest by looking: a real backdoor's trigger is a small, crisp patch,
a clean class's trigger is diffuse noise. Triggers are tiny (32x32 for CIFAR), so they are
upscaled with nearest-neighbour by an integer factor to stay crisp and visible. Only reads
``TriggerSet.classes`` and ``TriggerSet.image(i)``; torch is not imported here.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

UPSCALE = 4


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
