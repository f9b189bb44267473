"""`scan attack`: users train poisoned models to test their gate with."""

from __future__ import annotations

import json

import onnx
import pytest

from scanner.attacks.recipe import parse_attack_params
from scanner.cli import main
from scanner.io.cifar import SAMPLE_DIR
from scanner.io.loader import load_model


def test_list_names_every_attack(capsys):
    from scanner.attacks import list_attacks

    assert main(["attack", "--list"]) == 0
    out = capsys.readouterr().out
    for name in list_attacks():
        assert name in out
    assert "clean-label" in out and "poison-label" in out


def test_attack_on_user_data_writes_model_and_sidecar(tmp_path, capsys):
    out = tmp_path / "bd.onnx"
    args = ["attack", "badnets", "--data", str(SAMPLE_DIR), "--arch", "resnet8", "--epochs", "1",
            "--train-size", "120", "--m", "12", "--target", "3", "--out", str(out), "--quiet"]
    assert main(args) == 0
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["recipe"]["attack"] == "badnets" and side["recipe"]["m"] == 12
    assert side["recipe"]["target"] == 3 and side["recipe"]["train_size"] == 120
    assert 0.0 <= side["cda"] <= 1.0 and 0.0 <= side["asr"] <= 1.0
    assert "CDA" in capsys.readouterr().out
    m = load_model(out)  # the product's own import path accepts what it trains
    assert m.num_classes == 10 and m.parity.passed
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["classes"])[3] == "cat"
    assert main(args) == 2  # never overwrites silently
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize("args,msg", [
    (["attack", "nosuch", "--out", "x.onnx"], "unknown attack"),
    (["attack", "badnets", "--out", "x.pt"], ".onnx"),
    (["attack", "badnets"], "--out"),
    (["attack", "badnets", "--out", "x.onnx", "--rate", "1.5"], "--rate"),
])
def test_attack_input_errors(args, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert msg in capsys.readouterr().err


def test_attack_params_are_typed():
    assert parse_attack_params(["alpha=0.2", "k=8", "flag=true", "mode=noise"]) == {
        "alpha": 0.2, "k": 8, "flag": True, "mode": "noise"}
    with pytest.raises(Exception, match="NAME=VALUE"):
        parse_attack_params(["alpha"])


def test_unknown_attack_param_is_an_input_error(tmp_path, capsys):
    assert main(["attack", "badnets", "--data", str(SAMPLE_DIR), "--arch", "resnet8",
                 "--epochs", "1", "--train-size", "50", "--out", str(tmp_path / "x.onnx"),
                 "--param", "colour=red", "--quiet"]) == 2
    assert "colour" in capsys.readouterr().err
