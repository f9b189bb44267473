"""Device selection shared by every entry point."""

from __future__ import annotations

import torch

from scanner.errors import InputError


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto|cpu|cuda[:N]`` to a torch device; ``auto`` picks CUDA when torch sees one."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError("--device cuda was requested but torch sees no CUDA device",
                             hint="use --device auto or --device cpu")
        return torch.device(name)
    raise InputError(f"unknown device {name!r}", hint="choose auto, cpu or cuda")


def onnxruntime_providers(device: torch.device | None = None) -> list[str]:
    """onnxruntime execution providers matching the torch device (CUDA only if both see it)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wants_cuda = device is None or device.type == "cuda"
    if wants_cuda and "CUDAExecutionProvider" in available and torch.cuda.is_available():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
