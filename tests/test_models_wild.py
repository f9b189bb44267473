"""CIFAR-size architecture families that look like third-party models found in the wild.

Each must survive the product's path end to end: build, train a step, export with
``export_onnx``, import with ``load_model`` (onnxruntime parity), and split into features and a
Linear head, because the scanner's detectors and repairs need exactly that of any model.
"""

from __future__ import annotations

import collections

import onnx
import pytest
import torch
from torch import nn

from scanner.classifier import SplitClassifier
from scanner.cli import main
from scanner.io.export import export_onnx
from scanner.io.loader import load_model
from scanner.io.spec import InputSpec
from scanner.models import build_model, get_config

# name -> (family, penultimate feature size)
WILD = {
    "wrn16_2": ("cifar_wrn", 128),
    "wrn16_4": ("cifar_wrn", 256),
    "vgg_elu": ("cifar_vgg_elu", 256),
    "keras_cnn": ("keras_cnn", 128),
    "resnet_nobn": ("cifar_resnet_nobn", 64),
    "lenet": ("lenet", 84),
    "mobilenet_cifar": ("mobilenet_cifar", 512),
}
SPEC = InputSpec(channels=3, height=32, width=32, input_name="input", output_name="logits")


def _perturb(model: nn.Module) -> nn.Module:
    """Move every weight off its initial value (zero-initialised Fixup branches and heads, unit
    BN) and give BN non-trivial running statistics, so parity and folding are actually tested."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return model


@pytest.mark.parametrize("name", list(WILD))
def test_wild_arch_trains_exports_imports_and_splits(name, tmp_path, capsys):
    family, feat_dim = WILD[name]
    cfg = get_config(name)
    assert cfg.family == family and cfg.input_size == 32
    torch.manual_seed(0)
    model = build_model(name, num_classes=10)
    n_params = sum(p.numel() for p in model.parameters())
    assert f"{n_params / 1e6:.2f} M parameters" in cfg.description

    # The logits are the output of an nn.Linear applied to a flat feature vector.
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    seen = {}
    heads[-1].register_forward_hook(lambda m, i, o: seen.update(inp=i[0], out=o))
    x = torch.rand(8, 3, 32, 32)
    model.train()
    out = model(x)
    assert out.shape == (8, 10) and seen["out"] is out and seen["inp"].shape == (8, feat_dim)
    nn.functional.cross_entropy(out, torch.arange(8) % 10).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())

    path = export_onnx(_perturb(model).eval(), None, tmp_path / f"{name}.onnx", spec=SPEC)
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    if name in ("mobilenet_cifar", "vgg_elu", "lenet", "resnet_nobn"):
        assert "BatchNormalization" not in ops, ops  # BN after conv folds; the others have none
    if name == "keras_cnn":
        assert ops["Pad"] == 2, ops  # TF "same" stride-2 padding stays an explicit Pad

    loaded = load_model(path)
    assert loaded.parity is not None and loaded.parity.passed
    clf = SplitClassifier.from_loaded(loaded)  # verifies M(E(x)) == net(x)
    xs = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        feats = clf.features(xs)
        assert feats.shape == (2, feat_dim)
        torch.testing.assert_close(clf.head(feats), model(xs), rtol=1e-4, atol=1e-4)

    assert main(["list", "archs"]) == 0
    assert name in [line.split()[0] for line in capsys.readouterr().out.splitlines()]


def test_vgg_small_keeps_its_parameter_names():
    """``act``/``bn`` were added to CifarVGG; public vgg_small checkpoints must still load."""
    keys = list(build_model("vgg_small").state_dict())
    assert keys[:6] == ["features.0.weight", "features.1.weight", "features.1.bias",
                        "features.1.running_mean", "features.1.running_var",
                        "features.1.num_batches_tracked"]
    assert keys[-2:] == ["classifier.weight", "classifier.bias"]
    assert "features.0.weight" in build_model("vgg_elu").state_dict()
    assert "features.0.bias" in build_model("vgg_elu").state_dict()


def test_fixup_scalars_learn_at_a_tenth_of_the_rate():
    """Same forward in train and eval mode; only the scalars' gradients are scaled."""
    from scanner.models.fixup_resnet import SCALAR_GRAD_SCALE

    torch.manual_seed(0)
    net = _perturb(build_model("resnet_nobn"))
    x = torch.rand(4, 3, 32, 32)
    grads = []
    for train in (True, False):
        net.zero_grad()
        net.train(train)
        out = net(x)
        out.square().sum().backward()
        grads.append((out.detach(), net.bias2.grad.clone(), net.fc.weight.grad.clone()))
    (o_tr, b_tr, w_tr), (o_ev, b_ev, w_ev) = grads
    assert torch.equal(o_tr, o_ev) and torch.equal(w_tr, w_ev)
    torch.testing.assert_close(b_tr, b_ev * SCALAR_GRAD_SCALE)


@pytest.mark.parametrize("arch,channels", [("wrn16_2", 3), ("wrn16_2", 1), ("resnet8", 1)])
def test_safetensors_reads_input_channels_off_the_first_conv(arch, channels, tmp_path):
    """A WRN's keys sort ``block1.*`` before ``conv1.weight``: the input channels come from the
    architecture's first convolution, not from the file's first 4-D tensor."""
    from safetensors.torch import save_file

    from scanner.models import build_model

    net = build_model(arch, num_classes=7, in_channels=channels)
    path = tmp_path / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    loaded = load_model(path, arch=arch)
    assert loaded.spec.channels == channels and loaded.num_classes == 7
