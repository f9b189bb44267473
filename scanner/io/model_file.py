"""What a loaded model is, independent of the file format it came from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from scanner.io.spec import InputSpec, Preprocess


def sha256_file(path: Path, extra: list[Path] | None = None) -> str:
    """sha256 of the model file (and any external-data side files, in order)."""
    h = hashlib.sha256()
    for p in [path, *(extra or [])]:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@dataclass
class ParityResult:
    """How closely the imported torch module reproduces onnxruntime on random inputs."""

    max_abs_diff: float
    logit_scale: float
    relative: float
    batch_sizes: list[int]
    passed: bool
    non_finite: int = 0  # NaN/inf values in the torch output (onnxruntime's were all finite)


@dataclass
class LoadedModel:
    """A model imported into PyTorch, with everything later stages need to know about it.

    ``net`` keeps the model's own input contract (so it can be exported back unchanged);
    :meth:`classifier` wraps it so it takes the scanner's [0,1] NCHW images.
    """

    net: nn.Module
    spec: InputSpec
    source: Path
    sha256: str
    format: str  # "onnx" | "safetensors"
    num_classes: int
    arch: str | None = None
    class_names: list[str] | None = None
    op_histogram: dict[str, int] = field(default_factory=dict)
    unsupported_ops: list[str] = field(default_factory=list)
    import_notes: list[str] = field(default_factory=list)
    parity: ParityResult | None = None
    has_batchnorm: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    onnx_opset: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def classifier(self) -> nn.Module:
        """Preprocess + net: takes [0,1] NCHW RGB images, returns the model's output."""
        return nn.Sequential(Preprocess(self.spec), self.net)
