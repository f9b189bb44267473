"""How a scan's heavy loops compute: arithmetic precision and memory layout.

Why this exists: on 2 CPU cores a full CTI scan of a ResNet-20 is dominated by convolutions in
the repair and the trigger inversion (forward + backward through two models). Two changes cut
that time without touching the method:

- **bfloat16 autocast** for the optimisation loops only. The models' parameters, the optimiser
  state, the triggers and every loss stay float32; convolutions and matrix products run in
  bf16. Every *measurement* that decides a verdict (held-out clean accuracy, a trigger's success
  rate) runs in float32: ``exact`` switches autocast off for it. ``auto`` picks bf16 only on a
  CPU with native bf16 support (AVX512-BF16/AMX through oneDNN); elsewhere bf16 is emulated and
  slower, so auto stays float32. On CUDA, auto stays float32 (not measured here).
- **channels_last** weights on CPU: oneDNN's convolutions are faster in NHWC, and the arithmetic
  is the same float32. A model whose graph cannot run in that layout (a ``view`` on a conv
  output) keeps its layout: the conversion is tried on a few images and undone on any error or
  disagreement.

The choice is a value passed down (``Compute``), never a global setting.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: torch.device | str) -> bool:
    """True when ``device`` runs bf16 convolutions natively (CPU: oneDNN with AVX512-BF16/AMX)."""
    if torch.device(device).type != "cpu":
        return False
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older build without the query
        return False


def resolve_precision(requested: str, device: torch.device | str) -> str:
    """``auto`` -> ``bf16`` on a CPU with native bf16, else ``fp32``; explicit values pass."""
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r} (choose from {', '.join(PRECISIONS)})")
    if requested == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return requested


@dataclass(frozen=True)
class Compute:
    """The resolved way to compute: where, and in which precision the optimisation loops run."""

    device: torch.device
    precision: str = "fp32"  # "fp32" | "bf16" (resolved; never "auto")

    def loops(self) -> contextlib.AbstractContextManager:
        """Context for optimisation loops (repair, trigger inversion, canary implant)."""
        if self.precision == "bf16":
            # cache off: the loops step the optimiser inside this context, and autocast's cache
            # would keep serving the bf16 copy of the weights from before the first step (a
            # fine-tune then "trains" on frozen weights while the float32 ones drift: held-out
            # accuracy 0.89 -> 0.28 in 10 steps in our probe)
            return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)
        return contextlib.nullcontext()


def exact(device: torch.device) -> contextlib.AbstractContextManager:
    """Float32 inside, even under an outer bf16 autocast: for measurements that decide verdicts."""
    return torch.autocast(device.type, enabled=False)


def to_fast_layout(model: nn.Module, probe: torch.Tensor) -> bool:
    """Convert ``model``'s 4-D weights to channels_last on CPU if it still computes the same.

    Returns True when converted. Why the probe: a graph that ``view``s a conv output fails in
    NHWC; such a model is left as it was.
    """
    dev = next(model.parameters()).device
    if dev.type != "cpu":
        return False
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), exact(dev):
            ref = model(probe)
            model.to(memory_format=torch.channels_last)
            out = model(probe)
        ok = out.shape == ref.shape and torch.allclose(out, ref, rtol=1e-3, atol=1e-4)
    except RuntimeError:
        ok = False
    if not ok:
        model.to(memory_format=torch.contiguous_format)
    model.train(was_training)
    return ok


def to_standard_layout(model: nn.Module) -> nn.Module:
    """Undo ``to_fast_layout`` (contiguous NCHW weights): for saving and exporting."""
    return model.to(memory_format=torch.contiguous_format)
