"""The ``scan`` command line: inspect on every exporter variant, exit codes, JSON purity."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from scanner.cli import main
from scanner.io.cifar import SAMPLE_DIR
from scanner.models import build_model

from conftest import VARIANTS


@pytest.mark.parametrize("variant", VARIANTS)
def test_inspect_every_variant(model_zoo, variant, capsys):
    for arch in ("resnet8", "tv_resnet18"):
        assert main(["inspect", str(model_zoo[(arch, variant)])]) == 0
        out = capsys.readouterr().out
        assert "parity" in out and "OK" in out and "NCHW" in out


def test_inspect_json_is_pure_and_complete(model_zoo, capsys):
    assert main(["inspect", str(model_zoo[("normalized", "torchscript13")]), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["num_classes"] == 10 and doc["parity"]["passed"] is True
    assert doc["spec"]["graph_mean"] == pytest.approx([0.49, 0.48, 0.45], abs=1e-5)
    assert doc["op_histogram"]["Conv"] > 0 and doc["unsupported_ops"] == []


def test_inspect_safetensors_with_trusted_sample(tmp_path, capsys):
    p = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in build_model("resnet8").state_dict().items()}, str(p))
    assert main(["inspect", str(p), "--arch", "resnet8", "--trusted", str(SAMPLE_DIR), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["trusted"]["images"] == 500 and 0.0 <= doc["trusted"]["clean_accuracy"] <= 1.0


def test_exit_codes(tmp_path, model_zoo, capsys):
    assert main(["inspect", str(tmp_path / "missing.onnx")]) == 2
    torch.save({"w": torch.zeros(2)}, tmp_path / "m.pt")
    assert main(["inspect", str(tmp_path / "m.pt")]) == 2
    assert "arbitrary code" in capsys.readouterr().err
    assert main(["no-such-command"]) == 2
    assert main(["inspect", str(model_zoo[("resnet8", "dynamo")]), "--layout", "NCWH"]) == 2
    assert main(["inspect", str(model_zoo[("resnet8", "dynamo")]), "--mean", "a,b"]) == 2
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 3, 8, 8])
    g = helper.make_graph([helper.make_node("Hardmax", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "h.onnx"))
    assert main(["inspect", str(tmp_path / "h.onnx")]) == 3
    assert "Hardmax" in capsys.readouterr().err


def test_crash_is_inconclusive_not_backdoor(monkeypatch, model_zoo, capsys):
    import scanner.scan

    def boom(*a, **k):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(scanner.scan, "inspect", boom)
    assert main(["inspect", str(model_zoo[("resnet8", "dynamo")])]) == 3
    assert "simulated crash" in capsys.readouterr().err


def test_installed_console_script(model_zoo):
    exe = shutil.which("scan")
    cmd = [exe] if exe else [sys.executable, "-m", "scanner.cli"]
    ok = subprocess.run([*cmd, "inspect", str(model_zoo[("resnet8", "dynamo_fixed1")]), "--json"],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["spec"]["fixed_batch"] == 1
    bad = subprocess.run([*cmd, "inspect", "/nonexistent/model.onnx"], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "not found" in bad.stderr and bad.stdout == ""


def test_progress_lines_say_how_long_a_phase_has_left(capsys):
    """The rate since the phase's first report gives the ETA; a phase that starts again (a
    second inversion under the same name) measures afresh."""
    from scanner.cli import Progress, eta_text

    assert eta_text(20.0, 25, 250) == "eta 3m20s" and eta_text(5.0, 10, 10) == "eta 5s"
    assert eta_text(0.0, 0, 10) == "" and eta_text(9.0, 10, 0) == ""
    t = [1000.0]
    p = Progress(quiet=False, clock=lambda: t[0])
    p(25, 300, {"phase": "repair"})
    t[0] = 1020.0
    p(50, 300, {"phase": "repair"})
    t[0] = 1040.0
    p(10, 200, {"phase": "repair"})  # restarted: no rate yet
    assert capsys.readouterr().err.splitlines() == [
        "  repair: step 25/300   8%", "  repair: step 50/300  16% eta 3m20s",
        "  repair: step 10/200   5%"]


def test_progress_of_parallel_phases_is_labelled_and_not_swallowed(capsys):
    """The parallel canary reports beside the main detection: each phase keeps its own rate
    limit, and a nested phase says whose it is."""
    from scanner.cli import Progress
    from scanner.scan.progress import phase

    p = Progress(quiet=False)
    main_repair = phase(p, "pivotal tuning")
    canary_repair = phase(phase(p, "canary"), "pivotal tuning")
    main_repair(25, 300, {"cda": 0.9})
    canary_repair(25, 300, {"cda": 0.8})
    main_repair(50, 300, {"cda": 0.9})  # within 10 s of its own last line: rate-limited
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["  pivotal tuning: step 25/300   8% cda=0.900",
                     "  canary: pivotal tuning: step 25/300   8% cda=0.800"]
