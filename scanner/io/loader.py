"""One entry point for models: dispatch on the file, refuse pickles."""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from scanner.errors import InputError
from scanner.io.model_file import LoadedModel

PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".tar"}
PICKLE_MESSAGE = (
    "refusing to load {name}: it is a Python pickle, and unpickling an untrusted file can run "
    "arbitrary code on this machine (a trojaned model file can own the CI runner)")
PICKLE_HINT = (
    "convert it where you trust it: export to ONNX (torch.onnx.export(model, x, 'model.onnx')) or "
    "save the weights with safetensors (safetensors.torch.save_file(model.state_dict(), "
    "'model.safetensors')) and scan that with --arch NAME")


def looks_like_pickle(path: Path) -> bool:
    """Pickle protocol header, or a torch zip archive containing ``data.pkl``."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80" and head[1:2] in {bytes([i]) for i in range(2, 6)}:
            return True
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return any(n.endswith("data.pkl") for n in z.namelist())
    except OSError:
        return False
    return False


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES or looks_like_pickle(path):
        return "pickle"
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".safetensors":
        return "safetensors"
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: u64 header length then JSON
        return "safetensors"
    return "onnx"


def load_model(path: str | Path, *, arch: str | None = None, spec_overrides: dict | None = None,
               check: bool = True, device: torch.device | None = None) -> LoadedModel:
    """Load a classifier from ONNX or safetensors (+arch). Pickles are refused, never opened."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"model file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory; pass the model file")
    fmt = detect_format(path)
    if fmt == "pickle":
        raise InputError(PICKLE_MESSAGE.format(name=path.name), hint=PICKLE_HINT)
    if fmt == "safetensors":
        from scanner.io.safetensors_import import load_safetensors

        return load_safetensors(path, arch, spec_overrides)
    from scanner.io.onnx_import import load_onnx

    if arch is not None:
        raise InputError("--arch applies to safetensors files only; an ONNX file carries its graph")
    return load_onnx(path, spec_overrides, check=check, device=device)
