"""safetensors + --arch import, and refusal of pickled checkpoints."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from scanner.errors import InputError
from scanner.io.loader import load_model
from scanner.io.split import split_features, verify_split
from scanner.models import build_model


@pytest.mark.parametrize("arch,size,classes", [("resnet20", 32, 10), ("resnet18_cifar", 32, 7),
                                               ("resnet18", 64, 5), ("vgg_small", 32, 10)])
def test_safetensors_round_trip(tmp_path, arch, size, classes):
    torch.manual_seed(0)
    net = build_model(arch, num_classes=classes).eval()
    p = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(p))
    m = load_model(p, arch=arch)
    assert m.num_classes == classes and m.format == "safetensors" and m.arch == arch
    assert m.has_batchnorm
    x = torch.rand(3, 3, size, size)
    with torch.no_grad():
        assert torch.equal(m.net(x), net(x))
    split = split_features(m.net)
    assert verify_split(m.net, split, x) < 1e-5


def test_prefixes_stripped(tmp_path):
    net = build_model("resnet8").eval()
    p = tmp_path / "w.safetensors"
    save_file({f"module._orig_mod.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(p))
    m = load_model(p, arch="resnet8")
    assert any("module." in n for n in m.import_notes) and any("_orig_mod." in n for n in m.import_notes)


def test_wrong_arch_reports_keys(tmp_path):
    net = build_model("resnet8")
    p = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(p))
    with pytest.raises(InputError, match="missing keys: .*layer1.1") as exc:
        load_model(p, arch="resnet20")
    assert exc.value.exit_code == 2
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    sd["extra.weight"] = torch.zeros(3)
    save_file(sd, str(p))
    with pytest.raises(InputError, match="unexpected keys: extra.weight"):
        load_model(p, arch="resnet8")


def test_safetensors_needs_arch(tmp_path):
    p = tmp_path / "w.safetensors"
    save_file({"linear.weight": torch.zeros(10, 4)}, str(p))
    with pytest.raises(InputError, match="--arch"):
        load_model(p)
    with pytest.raises(InputError, match="unknown architecture"):
        load_model(p, arch="resnet9000")


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "model.bin", "sneaky.onnx"])
def test_pickles_refused_without_unpickling(tmp_path, name):
    """A pickle must be refused before anything deserialises it (that would run its code)."""
    p = tmp_path / name
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    if name.endswith(".onnx"):
        p.write_bytes(pickle.dumps(Evil(), protocol=4))
    else:
        torch.save({"state_dict": build_model("resnet8").state_dict(), "evil": Evil()}, str(p))
    with pytest.raises(InputError, match="arbitrary code") as exc:
        load_model(p)
    assert "safetensors" in (exc.value.hint or "")
    assert not marker.exists()
