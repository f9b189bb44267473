"""Trusted-data loading: formats, conversions, and every error the issue lists."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from scanner.errors import InputError
from scanner.io.cifar import CIFAR10_CLASSES, load_cifar10, load_cifar10_sample
from scanner.io.data import load_trusted
from scanner.io.spec import InputSpec, Preprocess

SPEC = InputSpec(channels=3, height=32, width=32)


def _img(path, size=(32, 32), mode="RGB", seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed)
    arr = g.integers(0, 256, (size[1], size[0], 3 if mode == "RGB" else 1), dtype=np.uint8)
    Image.fromarray(arr.squeeze()).convert(mode).save(path)


def _folder(root, classes, per_class=3, **kw):
    for c in classes:
        for i in range(per_class):
            _img(root / c / f"{i}.png", seed=hash((c, i)) % 1000, **kw)
    return root


def test_folder_with_labels_txt(tmp_path):
    root = _folder(tmp_path / "d", ["dog", "cat"])
    (root / "labels.txt").write_text("cat\ndog\nbird\n")
    d = load_trusted(root, SPEC, 3, min_per_class=0)
    assert len(d) == 6 and d.x.shape == (6, 3, 32, 32) and d.x.dtype == torch.float32
    assert 0.0 <= float(d.x.min()) and float(d.x.max()) <= 1.0
    assert d.class_counts() == {0: 3, 1: 3}  # cat -> 0, dog -> 1 from labels.txt
    assert d.class_names == ["cat", "dog", "bird"]
    assert any("labels.txt" in n for n in d.notes)


def test_labels_flag_wins_and_count_must_match(tmp_path):
    root = _folder(tmp_path / "d", ["a", "b"])
    lab = tmp_path / "names.txt"
    lab.write_text("b\na\n")
    d = load_trusted(root, SPEC, 2, labels_file=lab, min_per_class=1)
    a_idx = d.y[0].item()  # folder "a" is read first
    assert a_idx == 1
    with pytest.raises(InputError, match="lists 2 classes but the model has 10"):
        load_trusted(root, SPEC, 10, labels_file=lab)


def test_numeric_folder_names_refused_when_ambiguous(tmp_path):
    root = _folder(tmp_path / "d", [str(i) for i in range(12)], per_class=1)
    with pytest.raises(InputError, match="numeric names") as exc:
        load_trusted(root, SPEC, 12, min_per_class=1)
    assert "labels.txt" in exc.value.hint
    (root / "labels.txt").write_text("\n".join(str(i) for i in range(12)))
    d = load_trusted(root, SPEC, 12, min_per_class=1)
    assert sorted(d.y.tolist()) == list(range(12))
    # "10" must map to index 10 (not the text-sorted position 2)
    idx10 = [i for i, y in enumerate(d.y.tolist()) if y == 10]
    assert len(idx10) == 1


def test_digit_folder_names_refused_without_labels(tmp_path):
    """Even single digits: "3" may not be class 3 (the README promises a refusal)."""
    root = _folder(tmp_path / "d", [str(i) for i in range(10)], per_class=1)
    with pytest.raises(InputError, match="numeric names") as exc:
        load_trusted(root, SPEC, 10, min_per_class=1)
    assert "labels.txt" in exc.value.hint and "  7" in exc.value.message
    d = load_trusted(root, SPEC, 10, model_class_names=[str(9 - i) for i in range(10)],
                     min_per_class=1)
    assert d.y.tolist() == list(range(9, -1, -1))  # folders read "0".."9"; "9" is class 0
    assert any("class names stored in the model" in n for n in d.notes)


def test_model_class_names_used_when_folder_has_no_labels(tmp_path):
    root = _folder(tmp_path / "d", ["ship", "airplane"], per_class=2)
    d = load_trusted(root, SPEC, 10, model_class_names=list(CIFAR10_CLASSES), min_per_class=0)
    assert set(d.y.tolist()) == {0, 8}


def test_empty_folder(tmp_path):
    (tmp_path / "e").mkdir()
    with pytest.raises(InputError, match="empty"):
        load_trusted(tmp_path / "e", SPEC, 10)


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_trusted(tmp_path / "nope", SPEC, 10)


def test_non_image_files_listed(tmp_path):
    root = _folder(tmp_path / "d", ["a", "b"])
    (root / "a" / "notes.txt").write_text("hi")
    (root / "b" / "model.onnx").write_bytes(b"x")
    with pytest.raises(InputError, match="2 file\\(s\\).*not images") as exc:
        load_trusted(root, SPEC, 2, min_per_class=1)
    assert "notes.txt" in exc.value.message and "model.onnx" in exc.value.message


def test_unreadable_images_listed(tmp_path):
    root = _folder(tmp_path / "d", ["a", "b"])
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(InputError, match="could not be read") as exc:
        load_trusted(root, SPEC, 2, min_per_class=1)
    assert "broken.jpg" in exc.value.message


def test_class_model_does_not_have(tmp_path):
    root = _folder(tmp_path / "d", ["cat", "unicorn"])
    (root / "labels.txt").write_text("cat\ndog\n")
    with pytest.raises(InputError, match="not listed") as exc:
        load_trusted(root, SPEC, 2, min_per_class=1)
    assert "unicorn" in exc.value.message


def test_min_per_class(tmp_path):
    root = _folder(tmp_path / "d", ["a", "b"], per_class=2)
    with pytest.raises(InputError, match="at least 3") as exc:
        load_trusted(root, SPEC, 2, min_per_class=3)
    assert "class 0 (a): 2" in exc.value.message
    with pytest.raises(InputError, match="class 2 \\(c\\): 0"):  # a model class with no data
        load_trusted(root, SPEC, 3, model_class_names=["a", "b", "c"], min_per_class=1)


def test_resize_and_mode_conversion_reported(tmp_path):
    root = tmp_path / "d"
    _img(root / "a" / "big.png", size=(64, 48))
    _img(root / "a" / "gray.png", mode="L")
    _img(root / "b" / "ok.png")
    d = load_trusted(root, SPEC, 2, min_per_class=1)
    assert d.x.shape == (3, 3, 32, 32)
    assert any(n.startswith("Resized 1 image(s) from 64x48 to the model's 32x32") for n in d.notes)
    gray_note = [n for n in d.notes if "grayscale to RGB" in n]
    assert len(gray_note) == 1 and "sees no colour" in gray_note[0]
    gray = load_trusted(root, InputSpec(channels=1, height=16, width=16), 2, min_per_class=1)
    assert gray.x.shape == (3, 1, 16, 16)


def test_csv(tmp_path):
    for i in range(4):
        _img(tmp_path / "imgs" / f"{i}.png", seed=i)
    (tmp_path / "list.csv").write_text("path,label\n" + "".join(f"imgs/{i}.png,{i % 2}\n" for i in range(4)))
    d = load_trusted(tmp_path / "list.csv", SPEC, 2, min_per_class=2)
    assert d.y.tolist() == [0, 1, 0, 1]
    (tmp_path / "bad.csv").write_text("imgs/0.png,7\nimgs/1.png,0\n")
    with pytest.raises(InputError, match="out of range"):
        load_trusted(tmp_path / "bad.csv", SPEC, 2, min_per_class=0)
    (tmp_path / "missing.csv").write_text("imgs/nope.png,0\n")
    with pytest.raises(InputError, match="nope.png: file not found"):
        load_trusted(tmp_path / "missing.csv", SPEC, 2, min_per_class=0)


def test_npz_layouts_and_ranges(tmp_path):
    g = np.random.default_rng(0)
    x = g.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    y = np.arange(10) % 2
    np.savez(tmp_path / "u8.npz", x=x, y=y)
    a = load_trusted(tmp_path / "u8.npz", SPEC, 2, min_per_class=5)
    np.savez(tmp_path / "f_nchw.npz", x=x.transpose(0, 3, 1, 2).astype(np.float32) / 255, y=y)
    b = load_trusted(tmp_path / "f_nchw.npz", SPEC, 2, min_per_class=5)
    assert torch.allclose(a.x, b.x, atol=1e-6)
    np.savez(tmp_path / "norm.npz", x=(x.astype(np.float32) / 255 - 0.5) / 0.25, y=y)
    with pytest.raises(InputError):
        load_trusted(tmp_path / "norm.npz", SPEC, 2, min_per_class=0)
    np.savez(tmp_path / "nolabels.npz", x=x)
    with pytest.raises(InputError, match="'x' .* and 'y'"):
        load_trusted(tmp_path / "nolabels.npz", SPEC, 2)
    np.savez(tmp_path / "neg.npz", x=x, y=y - 1)
    with pytest.raises(InputError, match="out of range"):
        load_trusted(tmp_path / "neg.npz", SPEC, 2, min_per_class=0)


def test_unsupported_trusted_format(tmp_path):
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(InputError, match="unsupported"):
        load_trusted(tmp_path / "data.json", SPEC, 2)


def test_split_is_deterministic_and_stratified():
    from scanner.io.data import TrustedData

    y = torch.arange(100) % 4
    d = TrustedData(x=torch.rand(100, 3, 4, 4), y=y)
    t1, h1 = d.split(0.2, seed=3)
    t2, h2 = d.split(0.2, seed=3)
    _, h3 = d.split(0.2, seed=4)
    assert torch.equal(h1.x, h2.x) and not torch.equal(h1.x, h3.x)
    assert len(t1) == 80 and len(h1) == 20 and h1.class_counts() == {0: 5, 1: 5, 2: 5, 3: 5}
    assert not (set(map(tuple, t1.x.flatten(1).tolist())) & set(map(tuple, h1.x.flatten(1).tolist())))


def test_preprocess_maps_unit_range_to_spec():
    spec = InputSpec(layout="NHWC", value_range=(0.0, 255.0), mean=(127.5,), std=(127.5,))
    out = Preprocess(spec)(torch.ones(2, 3, 4, 5))
    assert out.shape == (2, 4, 5, 3) and torch.allclose(out, torch.ones_like(out))


def test_shipped_sample_loads_as_trusted_folder():
    from scanner.io.cifar import SAMPLE_DIR

    x, y = load_cifar10_sample()
    assert x.shape == (500, 32, 32, 3) and np.bincount(y).tolist() == [50] * 10
    d = load_trusted(SAMPLE_DIR, SPEC, 10)
    assert len(d) == 500 and d.class_names == list(CIFAR10_CLASSES)


@pytest.mark.shared_data
def test_shared_cifar10(cifar_dir):
    x, y = load_cifar10("test", cifar_dir)
    assert x.shape == (10000, 32, 32, 3) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [1000] * 10
