"""Model import/export round trips over the exporter variants real users produce."""

from __future__ import annotations

import onnx
import pytest
import torch

from scanner.errors import InputError, ModelImportError
from scanner.io import onnx_import
from scanner.io.export import export_onnx
from scanner.io.loader import load_model
from scanner.io.parity import check_parity, onnx_session
from scanner.io.split import split_features, verify_split

from conftest import VARIANTS

CASES = [(a, v) for a in ("resnet8", "tv_resnet18") for v in VARIANTS]


@pytest.mark.parametrize("arch,variant", CASES, ids=[f"{a}-{v}" for a, v in CASES])
def test_round_trip(model_zoo, tmp_path, arch, variant):
    """export -> import (parity) -> any batch size -> split -> re-export -> onnxruntime parity."""
    src = model_zoo[(arch, variant)]
    m = load_model(src)
    assert m.parity is not None and m.parity.passed and m.parity.relative < 1e-4
    assert m.num_classes == 10 and m.unsupported_ops == []
    assert not m.has_batchnorm  # exporters fold BN into Conv
    x = torch.rand(5, *m.spec.shape_chw)  # batch 5 even for fixed-batch files
    with torch.no_grad():
        y = m.net(x)
    assert y.shape == (5, 10)
    split = split_features(m.net)
    assert verify_split(m.net, split, x) < 1e-4
    assert split.feature_dim in (64, 512)

    out = tmp_path / "repaired.onnx"
    export_onnx(m.net, src, out, spec=m.spec, actions="round-trip test", source_sha256=m.sha256,
                verify_inputs=x.numpy())
    re = onnx.load(str(out))
    assert [o.version for o in re.opset_import if o.domain in ("", "ai.onnx")][0] <= 17
    assert re.graph.input[0].name == m.spec.input_name
    assert re.graph.output[0].name == m.spec.output_name
    assert not re.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_value")
    meta = {p.key: p.value for p in re.metadata_props}
    assert meta["scanner.source_sha256"] == m.sha256 and meta["scanner.action"] == "round-trip test"
    assert not list(tmp_path.glob("*.data")) and not list(tmp_path.glob("*.tmp"))
    sess = onnx_session(out)
    ref = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert torch.allclose(torch.from_numpy(ref), y, rtol=1e-3, atol=1e-5)
    assert load_model(out).parity.passed


def test_import_notes_name_the_fixes(model_zoo):
    assert any("opset 20 -> 17" in n for n in load_model(model_zoo[("resnet8", "dynamo")]).import_notes)
    ts = load_model(model_zoo[("resnet8", "torchscript11")])
    assert any("Identity" in n for n in ts.import_notes)
    fixed = load_model(model_zoo[("resnet8", "dynamo_fixed1")])
    assert fixed.spec.fixed_batch == 1 and any("fixed batch size 1" in n for n in fixed.import_notes)


def test_external_data_sha_covers_side_file(model_zoo, tmp_path):
    src = model_zoo[("resnet8", "dynamo_external")]
    side = src.parent / (src.name + ".data")
    assert side.is_file()
    m = load_model(src)
    assert m.sha256 != onnx_import.sha256_file(src)


def test_missing_external_data_is_input_error(model_zoo, tmp_path):
    import shutil

    src = model_zoo[("resnet8", "dynamo_external")]
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(src, lonely)
    with pytest.raises(InputError, match="external data"):
        load_model(lonely)


def test_graph_normalisation_detected(model_zoo):
    m = load_model(model_zoo[("normalized", "torchscript13")])
    assert m.spec.graph_mean == pytest.approx((0.49, 0.48, 0.45), abs=1e-5)
    assert m.spec.graph_std == pytest.approx((0.25, 0.24, 0.26), abs=1e-5)
    assert m.spec.mean is None  # the scanner must not normalise twice
    assert load_model(model_zoo[("resnet8", "torchscript11")]).spec.graph_mean is None


def test_softmax_output_split(model_zoo):
    m = load_model(model_zoo[("softmax", "dynamo")])
    split = split_features(m.net)
    assert split.outputs_probabilities
    assert any("outputs probabilities" in n for n in m.import_notes), m.import_notes
    x = torch.rand(3, 3, 32, 32)
    verify_split(m.net, split, x)
    with torch.no_grad():
        assert torch.allclose(split.head(split.features(x)).softmax(-1), m.net(x), atol=1e-5)


def test_parity_failure_refused(model_zoo, monkeypatch):
    """A conversion that changes the numbers must be refused (exit 3), naming the mismatch."""
    real_convert = onnx_import.convert

    def bad_convert(model):
        module = real_convert(model)
        with torch.no_grad():
            for p in module.parameters():
                p.mul_(1.01)
        return module

    monkeypatch.setattr(onnx_import, "convert", bad_convert)
    with pytest.raises(ModelImportError, match="disagrees with onnxruntime") as exc:
        load_model(model_zoo[("resnet8", "torchscript17")])
    assert exc.value.exit_code == 3


def test_check_parity_detects_small_drift(model_zoo):
    src = model_zoo[("resnet8", "torchscript17")]
    m = load_model(src)
    sess = onnx_session(src)
    assert check_parity(sess, m.net, m.spec).passed
    with torch.no_grad():
        next(m.net.parameters()).add_(1e-2)
    assert not check_parity(sess, m.net, m.spec).passed


def _tiny_graph(op_type: str, opset: int = 17) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 3, 8, 8])
    node = helper.make_node(op_type, ["x"], ["y"])
    return helper.make_model(helper.make_graph([node], "g", [x], [y]),
                             opset_imports=[helper.make_opsetid("", opset)])


def test_unsupported_op_named(tmp_path):
    p = tmp_path / "odd.onnx"
    onnx.save(_tiny_graph("Hardmax", 13), str(p))
    with pytest.raises(ModelImportError, match="Hardmax") as exc:
        load_model(p)
    assert exc.value.exit_code == 3


def test_not_an_onnx_file(tmp_path):
    p = tmp_path / "junk.onnx"
    p.write_bytes(b"this is not protobuf" * 10)
    with pytest.raises(InputError):
        load_model(p)


def test_export_refuses_to_overwrite_input(model_zoo):
    src = model_zoo[("resnet8", "torchscript17")]
    m = load_model(src)
    before = src.read_bytes()
    with pytest.raises(InputError, match="overwrite"):
        export_onnx(m.net, src, src, spec=m.spec)
    assert src.read_bytes() == before


def test_export_verification_failure_writes_nothing(model_zoo, tmp_path, monkeypatch):
    """If onnxruntime disagrees with torch, no file appears at --out (atomic write)."""
    from scanner.io import export as export_mod

    src = model_zoo[("resnet8", "torchscript17")]
    m = load_model(src)

    def broken_verify(path, net, x, batch_size=256):
        raise export_mod.InconclusiveError("simulated mismatch")

    monkeypatch.setattr(export_mod, "verify_export", broken_verify)
    out = tmp_path / "fixed.onnx"
    with pytest.raises(export_mod.InconclusiveError):
        export_onnx(m.net, src, out, spec=m.spec)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_imported_model_trains(model_zoo):
    """BN-folded imports must still fine-tune: gradients reach every parameter, loss decreases."""
    m = load_model(model_zoo[("resnet8", "dynamo")])
    net = m.net.train()
    params = [p for p in net.parameters()]
    assert params and all(p.requires_grad for p in params)
    torch.manual_seed(0)
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is not None for p in params)
    assert losses[-1] < losses[0]
