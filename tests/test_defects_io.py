"""Loader defects a new user hit: oversized and corrupt images, NaN models, silent conversions."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from scanner.errors import InconclusiveError, InputError, ModelImportError
from scanner.io import onnx_import
from scanner.io.data import load_trusted
from scanner.io.loader import load_model
from scanner.io.spec import InputSpec

SPEC = InputSpec(channels=3, height=32, width=32)


def _save(path, size=(32, 32), mode="RGB", seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed)
    arr = g.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path)


def _two_classes(root, per_class=2, **kw):
    for c in ("cat", "dog"):
        for i in range(per_class):
            _save(root / c / f"{i}.png", seed=i, **kw)
    return root


# --------------------------------------------------------------------------- images

@pytest.mark.parametrize("side", [50, 70], ids=["warning-1x-2x", "error-over-2x"])
def test_decompression_bomb_is_an_input_error_naming_the_file(tmp_path, monkeypatch, side):
    """Pillow warns between 1x and 2x its pixel limit and raises above 2x: both are refused."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 32x32 = 1024 passes; 50x50 = 2500
    root = _two_classes(tmp_path / "d")
    _save(root / "cat" / "huge.png", size=(side, side))
    with pytest.raises(InputError, match="too large") as exc:
        load_trusted(root, SPEC, 2, min_per_class=1)
    msg = exc.value.message
    assert exc.value.exit_code == 2
    assert "huge.png" in msg and "0.png" not in msg
    assert f"{side * side:,} pixels" in msg and "limit of 2,000 pixels" in msg
    assert "downscale" in exc.value.hint


def test_corrupt_image_names_the_file_and_the_decoder_error(tmp_path):
    root = _two_classes(tmp_path / "d")
    good = (root / "cat" / "0.png").read_bytes()
    (root / "cat" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "dog" / "garbage.png").write_bytes(b"definitely not a PNG" * 8)
    with pytest.raises(InputError, match="2 file\\(s\\) could not be read") as exc:
        load_trusted(root, SPEC, 2, min_per_class=1)
    lines = exc.value.message.splitlines()[1:]
    truncated = next(ln for ln in lines if "truncated.png" in ln)
    garbage = next(ln for ln in lines if "garbage.png" in ln)
    assert "cannot be decoded as an image" in truncated and "truncated" in truncated.split("(", 1)[1]
    assert "cannot be decoded as an image" in garbage and "cannot identify image file" in garbage


# --------------------------------------------------------------------------- NaN models

def _nan_graph(path, nan_in_graph: bool = True):
    """x -> Flatten -> Gemm -> + Log(c): c = -1 gives NaN logits, c = 1 adds 0."""
    g = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 2])
    inits = [numpy_helper.from_array(g.normal(size=(2, 192)).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(2, np.float32), "bias"),
             numpy_helper.from_array(np.array([-1.0 if nan_in_graph else 1.0], np.float32), "c")]
    nodes = [helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "bias"], ["z"], transB=1),
             helper.make_node("Log", ["c"], ["logc"]),
             helper.make_node("Add", ["z", "logc"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "nan", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_model_with_nan_outputs_is_blamed_on_the_model(tmp_path):
    with pytest.raises(ModelImportError) as exc:
        load_model(_nan_graph(tmp_path / "nan.onnx"))
    msg = exc.value.message
    assert "the model itself produces non-finite outputs" in msg and "onnxruntime" in msg
    assert "onnx2torch" not in str(exc.value) and "disagrees" not in msg
    assert exc.value.exit_code == 3


def test_nan_only_in_the_conversion_is_blamed_on_the_conversion(tmp_path, monkeypatch):
    real_convert = onnx_import.convert

    def nan_convert(model):
        module = real_convert(model)
        with torch.no_grad():
            next(module.parameters()).fill_(float("nan"))
        return module

    monkeypatch.setattr(onnx_import, "convert", nan_convert)
    with pytest.raises(ModelImportError, match="disagrees with onnxruntime") as exc:
        load_model(_nan_graph(tmp_path / "finite.onnx", nan_in_graph=False))
    assert "non-finite" in exc.value.message and "onnx2torch" in exc.value.hint


def _nan_net() -> torch.nn.Module:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    with torch.no_grad():
        net[1].bias.fill_(float("nan"))
    return net.eval()


def test_feature_split_check_refuses_nan_outputs():
    from scanner.io.split import split_features, verify_split

    net = _nan_net()
    with pytest.raises(ModelImportError, match="non-finite"):
        verify_split(net, split_features(net), torch.rand(2, 3, 8, 8))


def test_export_refuses_a_model_with_nan_outputs(tmp_path):
    from scanner.io.export import export_onnx

    out = tmp_path / "repaired.onnx"
    with pytest.raises(InconclusiveError, match="non-finite"):
        export_onnx(_nan_net(), None, out, spec=InputSpec(channels=3, height=8, width=8))
    assert not out.exists()


# --------------------------------------------------------------------------- conversion notes

def _is_sentence(note: str) -> bool:
    return note[:1].isupper() and note.endswith(".") and len(note.split()) >= 6


def _nhwc_softmax_fixed_batch(path):
    """A fixed-batch-1 NHWC classifier that outputs probabilities and names its classes."""
    g = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 3])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 2])
    inits = [numpy_helper.from_array(g.normal(size=(2, 192)).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(2, np.float32), "bias")]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Flatten", ["t"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "bias"], ["z"], transB=1),
             helper.make_node("Softmax", ["z"], ["probs"], axis=-1)]
    model = helper.make_model(helper.make_graph(nodes, "nhwc", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.add(key="classes", value='["cat", "dog"]')
    onnx.save(model, str(path))
    return path


def test_model_side_conversions_are_noted(tmp_path):
    m = load_model(_nhwc_softmax_fixed_batch(tmp_path / "m.onnx"))
    assert m.spec.layout == "NHWC" and m.class_names == ["cat", "dog"] and m.parity.passed
    notes = m.import_notes

    def one(word: str) -> str:
        found = [n for n in notes if word in n]
        assert len(found) == 1, (word, notes)
        return found[0]

    assert "--layout NCHW" in one("NHWC")
    assert "logits before the Softmax" in one("probabilities")
    assert "made dynamic" in one("fixed batch size 1")
    assert "'classes'" in one("metadata")
    assert all(_is_sentence(n) for n in notes), notes


def test_plain_nchw_logit_model_gets_no_conversion_notes(tmp_path):
    m = load_model(_nan_graph(tmp_path / "plain.onnx", nan_in_graph=False))
    assert m.import_notes == []


def test_data_side_conversions_are_noted(tmp_path):
    root = _two_classes(tmp_path / "d", per_class=3, mode="L", size=(40, 40))
    (root / "labels.txt").write_text("cat\ndog\n")
    d = load_trusted(root, SPEC, 2, min_per_class=1)
    assert any("grayscale to RGB" in n and "sees no colour" in n for n in d.notes)
    assert any("Resized 6 image(s) from 40x40" in n for n in d.notes)
    assert any("labels.txt: line i of that file is class i" in n for n in d.notes)
    assert all(_is_sentence(n) for n in d.notes), d.notes

    (root / "labels.txt").unlink()
    d = load_trusted(root, SPEC, 2, min_per_class=1)
    assert any("alphabetical order of the folder names" in n for n in d.notes)

    np.savez(tmp_path / "g.npz", x=np.zeros((10, 32, 32), np.uint8), y=np.arange(10) % 2)
    n = load_trusted(tmp_path / "g.npz", SPEC, 2, min_per_class=5).notes
    assert any("grayscale to RGB" in s for s in n) and all(_is_sentence(s) for s in n), n
