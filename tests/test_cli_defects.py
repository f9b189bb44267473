"""Defects a new user hit on the command line: outputs checked before the work, verdicts never
lost to a report that cannot be written, lines that CI logs do not break, reasons that name the
class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scanner import scan
from scanner.cli import Progress, main

SHA = "a" * 64
LONG = "x" * 150  # longer than the 80 columns Rich assumes off a terminal


def _canned(model, trusted, request, **kw) -> scan.ScanResult:
    return scan.ScanResult(
        "backdoor", [f"mask model score 6.000 >= threshold 3.500; most suspicious class 1 (b) "
                     f"{LONG}"],
        {"path": str(model), "sha256": SHA, "format": "onnx", "num_classes": 2,
         "class_names": ["a", "b"], "spec": {}, "import_notes": []},
        {"source": str(trusted), "images": 10, "clean_accuracy": 0.9, "notes": []}, request,
        detection={"method": "mask", "model_score": 6.0, "flagged": [1], "top_class": 1,
                   "wall_s": 1.0, "notes": [], "threshold": 3.5,
                   "per_class": [{"cls": 0, "score": 0.1, "asr_pivot": 0.5, "asr_tuned": None,
                                  "trigger_l1": 50.0, "anomaly_index": 0.1},
                                 {"cls": 1, "score": 6.0, "asr_pivot": 1.0, "asr_tuned": None,
                                  "trigger_l1": 3.0, "anomaly_index": 6.0}]})


def _never(*a, **k):
    raise AssertionError("the job ran although the output path was unusable")


@pytest.fixture()
def model(tmp_path) -> Path:
    m = tmp_path / "m.onnx"
    m.write_bytes(b"x")
    return m


def test_report_dir_that_is_a_file_fails_before_the_scan(model, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(scan, "detect", _never)
    blocker = tmp_path / "file"
    blocker.write_text("")
    for bad in (blocker, blocker / "reports"):
        assert main([str(model), "--trusted", str(tmp_path), "--report-dir", str(bad)]) == 2
        assert "--report-dir" in capsys.readouterr().err


def test_report_that_cannot_be_written_keeps_the_verdict(model, tmp_path, monkeypatch, capsys):
    import scanner.report.writer as writer

    def fail(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(scan, "detect", _canned)
    monkeypatch.setattr(writer, "write_reports", fail)
    code = main([str(model), "--trusted", str(tmp_path), "--report-dir", str(tmp_path / "r")])
    out, err = capsys.readouterr()
    assert code == 1  # the verdict decides, not the failed write
    assert "BACKDOOR" in out and "could not write the reports" in err


def test_repair_out_into_an_unusable_place_fails_before_the_repair(model, tmp_path,
                                                                    monkeypatch, capsys):
    monkeypatch.setattr(scan, "repair", _never)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["repair", str(model), "--trusted", str(tmp_path),
                 "--out", str(blocker / "fixed.onnx")]) == 2
    assert "--out" in capsys.readouterr().err


def test_init_into_an_unwritable_path_is_an_input_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["init", str(blocker / "scan.toml")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "inconclusive" not in err


def test_lines_are_not_wrapped_in_ci_logs(model, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(scan, "detect", _canned)
    assert main([str(model), "--trusted", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert any(LONG in line for line in out.splitlines()), out


def test_reason_names_the_class():
    from scanner.detectors.result import ClassScore, DetectionResult
    from scanner.scan.verdict import judge_detection

    per = [ClassScore(c, 6.0 if c == 1 else 0.1, 1.0, None, 3.0, 0.0) for c in range(2)]
    det = DetectionResult("mask", 6.0, per, [1], None, 1.0)
    res = _canned("m.onnx", "data", scan.build_request())
    res.reasons.clear()
    assert judge_detection(det, None, scan.build_request(), res) == scan.VERDICT_BACKDOOR
    assert res.reasons[0].endswith("most suspicious class 1 (b)")


def test_steps_without_a_count_announce_their_phase(capsys):
    p = Progress(quiet=False)
    p(0, 0, {"phase": "loading m.onnx"})
    p(3, 10, {"phase": "scan: trigger inversion"})
    assert capsys.readouterr().err.splitlines() == [
        "  loading m.onnx", "  scan: trigger inversion: step 3/10  30%"]


def test_request_is_frozen_and_resolves_flags_over_policy():
    import dataclasses

    from scanner.policy import policy_from_dict

    pol = policy_from_dict({"gate": {"method": "nc", "nc_threshold": 2.5},
                            "repair": {"max_cda_drop": 0.05}})
    req = scan.build_request(pol)
    assert (req.method, req.threshold, req.max_cda_drop) == ("nc", 2.5, 0.05)
    flagged = scan.build_request(pol, method="mask", max_cda_drop=0.01)
    assert (flagged.method, flagged.threshold, flagged.max_cda_drop) == ("mask", 3.5, 0.01)
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.method = "cti"  # type: ignore[misc]
    doc = json.loads(json.dumps(req.to_dict()))
    assert doc["method"] == "nc" and doc["nc_threshold"] == 2.5


def test_every_registry_lists_through_one_command(capsys):
    """`scan list KIND` reads the same registries the policy, the flags and the reports use."""
    from scanner.cli.tools_cmds import registries

    for kind, reg in registries().items():
        assert main(["list", kind]) == 0
        names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
        assert names == reg.names() and names, kind
    assert main(["list", "bogus"]) == 2
    from scanner.policy import METHODS, RepairPolicy
    import dataclasses

    assert list(METHODS) == registries()["detectors"].names()
    choices = {f.name: f.metadata["choices"] for f in dataclasses.fields(RepairPolicy)}
    assert list(choices["defense"]) == registries()["defenses"].names()
