"""What every job starts from: the model and its trusted data, loaded and sanity-checked.

Fail closed before spending minutes: a model whose clean accuracy on the trusted data is
implausibly low (wrong preprocessing, wrong class map, broken model) is never judged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from scanner.io.data import load_trusted
from scanner.io.loader import load_model
from scanner.io.model_file import LoadedModel
from scanner.io.trusted_split import TrustedSplit
from scanner.scan.progress import ProgressFn, announce
from scanner.scan.request import ScanRequest
from scanner.scan.results import VERDICT_INCONCLUSIVE, ScanResult


def clean_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of a [0,1]-input classifier."""
    from scanner.classifier import predict
    from scanner.ops.metrics import accuracy

    return accuracy(predict(model, x), y.cpu())


@dataclass
class Prepared:
    loaded: LoadedModel
    model: object  # SplitClassifier on the device
    split: TrustedSplit
    result: ScanResult  # inconclusive until a job decides otherwise


def prepare(model_path: str | Path, trusted: str | Path, request: ScanRequest,
            progress: ProgressFn | None = None) -> Prepared | ScanResult:
    """Load, split and check; a finished (inconclusive) ScanResult when the check fails."""
    from scanner.classifier import SplitClassifier
    from scanner.ops.precision import to_fast_layout

    t0 = time.perf_counter()
    device = request.torch_device
    torch.manual_seed(request.seed)
    announce(progress, f"loading {Path(model_path).name} and checking it against onnxruntime")
    loaded = load_model(model_path, arch=request.arch, spec_overrides=request.spec.to_dict(),
                        device=device)
    announce(progress, f"loading trusted data from {trusted}")
    data = load_trusted(trusted, loaded.spec, loaded.num_classes, labels_file=request.labels_file,
                        model_class_names=loaded.class_names,
                        min_per_class=request.min_per_class)
    model = SplitClassifier.from_loaded(loaded).to(device).eval()
    channels_last = to_fast_layout(model, data.x[:8].to(device))
    model_info = {"path": str(model_path), "sha256": loaded.sha256, "format": loaded.format,
                  "num_classes": loaded.num_classes, "spec": loaded.spec.to_dict(),
                  "class_names": data.class_names, "import_notes": loaded.import_notes}
    announce(progress, f"checking clean accuracy on {len(data)} trusted images")
    acc = clean_accuracy(model, data.x.to(device), data.y.to(device))
    trusted_info = {"source": data.source, "images": len(data), "clean_accuracy": acc,
                    "notes": data.notes}
    result = ScanResult(VERDICT_INCONCLUSIVE, [], model_info, trusted_info, request,
                        timings={"load_s": time.perf_counter() - t0},
                        run={"channels_last": channels_last})
    floor = max(request.min_clean_accuracy, 1.5 / max(2, loaded.num_classes))
    if acc < floor:
        result.reasons.append(
            f"clean accuracy on the trusted data is {acc:.2f} (< {floor:.2f}): the preprocessing "
            "(--mean/--std/--value-range/--layout) or the class map is probably wrong, or the "
            "model is broken; refusing to judge it")
        return result
    tune, held = data.split(request.holdout, seed=request.seed)
    return Prepared(loaded, model, TrustedSplit(tune, held), result)
