"""Shared fixtures: small models exported the ways real users' files arrive."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from scanner.io.cifar import shared_cifar10_dir

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and two threads collapse on a busy machine); a
    module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class NormalizedNet(torch.nn.Module):
    """A classifier with (x - mean) / std baked into its graph and a Softmax at the end."""

    def __init__(self, inner: torch.nn.Module, softmax: bool = False) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("mean", torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1))
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner((x - self.mean) / self.std)
        return torch.softmax(out, dim=-1) if self.softmax else out


def export_variant(model: torch.nn.Module, size: int, path: Path, variant: str) -> Path:
    """Export ``model`` as one of the exporter variants seen in the wild."""
    model = model.eval()
    x = torch.rand(2, 3, size, size)
    io_names = {"input_names": ["input"], "output_names": ["logits"]}
    dyn = {"dynamic_axes": {"input": {0: "b"}, "logits": {0: "b"}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if variant == "dynamo":
            torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False,
                              dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
        elif variant == "dynamo_external":
            torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=True, verbose=False)
        elif variant == "dynamo_fixed1":
            torch.onnx.export(model, (x[:1],), str(path), dynamo=True, external_data=False,
                              verbose=False)
        elif variant == "torchscript_fixed1":
            torch.onnx.export(model, (x[:1],), str(path), dynamo=False, opset_version=13, **io_names)
        elif variant.startswith("torchscript"):
            opset = int(variant.removeprefix("torchscript") or 13)
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset,
                              **io_names, **dyn)
        else:
            raise ValueError(variant)
    return path


VARIANTS = ["dynamo", "dynamo_external", "dynamo_fixed1", "torchscript11", "torchscript17",
            "torchscript_fixed1"]


@pytest.fixture(scope="session")
def model_zoo(tmp_path_factory) -> dict[tuple[str, str], Path]:
    """(arch, variant) -> ONNX path, for a CIFAR ResNet and a torchvision resnet18."""
    import torchvision

    from scanner.models import build_model

    root = tmp_path_factory.mktemp("zoo")
    torch.manual_seed(0)
    nets = {"resnet8": (build_model("resnet8"), 32),
            "tv_resnet18": (torchvision.models.resnet18(num_classes=10), 64)}
    out = {}
    for arch, (net, size) in nets.items():
        for v in VARIANTS:
            out[(arch, v)] = export_variant(net, size, root / f"{arch}_{v}.onnx", v)
    torch.manual_seed(1)
    out[("normalized", "torchscript13")] = export_variant(
        NormalizedNet(build_model("resnet8")), 32, root / "normalized.onnx", "torchscript13")
    out[("softmax", "dynamo")] = export_variant(
        NormalizedNet(build_model("resnet8"), softmax=True), 32, root / "softmax.onnx", "dynamo")
    return out


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    d = shared_cifar10_dir()
    if d is None:
        pytest.skip("needs ../shared/data/cifar10 (CIFAR-10 JPEG archive); absent on this machine")
    return d
