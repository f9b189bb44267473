"""``scan inspect``: how the scanner reads a model, and (with trusted data) its clean accuracy."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from scanner.io.data import load_trusted
from scanner.io.loader import load_model
from scanner.scan.prepare import clean_accuracy
from scanner.scan.request import ScanRequest
from scanner.scan.results import InspectResult


def inspect(model_path: str | Path, request: ScanRequest | None = None, *,
            trusted: str | Path | None = None) -> InspectResult:
    """Import a model (with the onnxruntime parity check) and summarise it.

    With ``trusted``, also load the data and measure clean accuracy: the quickest proof that
    preprocessing and the class map are right.
    """
    request = request or ScanRequest()
    loaded = load_model(model_path, arch=request.arch, spec_overrides=request.spec.to_dict(),
                        device=request.torch_device)
    result = InspectResult(
        model=str(model_path), format=loaded.format, sha256=loaded.sha256,
        num_classes=loaded.num_classes, spec=loaded.spec.to_dict(),
        op_histogram=loaded.op_histogram, unsupported_ops=loaded.unsupported_ops,
        import_notes=loaded.import_notes,
        parity=asdict(loaded.parity) if loaded.parity else None,
        has_batchnorm=loaded.has_batchnorm, onnx_opset=loaded.onnx_opset, arch=loaded.arch,
        class_names=loaded.class_names)
    if trusted is not None:
        data = load_trusted(trusted, loaded.spec, loaded.num_classes,
                            labels_file=request.labels_file,
                            model_class_names=loaded.class_names,
                            min_per_class=request.min_per_class)
        acc = clean_accuracy(loaded.classifier(), data.x, data.y)
        result.trusted = {"source": data.source, "images": len(data),
                          "class_counts": data.class_counts(), "notes": data.notes,
                          "clean_accuracy": acc, "class_names": data.class_names}
    return result
