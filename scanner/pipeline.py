"""The product's jobs as plain functions returning result objects (no printing, no exit codes).

The CLI parses flags and renders; everything a job computes lives in its result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from scanner import __version__
from scanner.io.data import DEFAULT_MIN_PER_CLASS, load_trusted
from scanner.io.loader import load_model
from scanner.io.model_file import LoadedModel


@dataclass
class InspectResult:
    """What ``scan inspect`` found out about a model (and, optionally, its trusted data)."""

    model: str
    format: str
    sha256: str
    num_classes: int
    spec: dict
    op_histogram: dict[str, int]
    unsupported_ops: list[str]
    import_notes: list[str]
    parity: dict | None
    has_batchnorm: bool
    onnx_opset: int | None
    arch: str | None
    class_names: list[str] | None
    trusted: dict | None = None
    tool_version: str = __version__
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def clean_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                   batch_size: int = 256) -> float:
    """Top-1 accuracy of a [0,1]-input classifier."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            correct += int((model(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum())
    return correct / max(1, len(y))


def inspect(model_path: str | Path, *, arch: str | None = None, spec_overrides: dict | None = None,
            trusted: str | Path | None = None, labels_file: str | Path | None = None,
            min_per_class: int = DEFAULT_MIN_PER_CLASS,
            device: torch.device | None = None) -> InspectResult:
    """Import a model (with the onnxruntime parity check) and summarise it.

    With ``trusted``, also load the data and measure clean accuracy: the quickest proof that
    preprocessing and the class map are right.
    """
    loaded: LoadedModel = load_model(model_path, arch=arch, spec_overrides=spec_overrides,
                                     device=device)
    result = InspectResult(
        model=str(model_path), format=loaded.format, sha256=loaded.sha256,
        num_classes=loaded.num_classes, spec=loaded.spec.to_dict(),
        op_histogram=loaded.op_histogram, unsupported_ops=loaded.unsupported_ops,
        import_notes=loaded.import_notes,
        parity=asdict(loaded.parity) if loaded.parity else None,
        has_batchnorm=loaded.has_batchnorm, onnx_opset=loaded.onnx_opset, arch=loaded.arch,
        class_names=loaded.class_names)
    if trusted is not None:
        data = load_trusted(trusted, loaded.spec, loaded.num_classes, labels_file=labels_file,
                            model_class_names=loaded.class_names, min_per_class=min_per_class)
        acc = clean_accuracy(loaded.classifier(), data.x, data.y)
        result.trusted = {"source": data.source, "images": len(data),
                          "class_counts": data.class_counts(), "notes": data.notes,
                          "clean_accuracy": acc, "class_names": data.class_names}
    return result
