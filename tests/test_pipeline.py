"""End-to-end scans (scanner.scan jobs and CLI) on real tiny backdoors, and the fail-closed paths."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from scanner import scan
from scanner.cli import main
from scanner.scan import detect_job
from scanner.policy import load_policy, policy_from_dict

from fixtures.digits import digits_model, split_digits


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("digits")
    _, _, xt, yt = split_digits()
    np.savez(d / "trusted.npz", x=(xt.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8),
             y=yt.numpy())
    for kind in ("badnets", "clean"):
        net, _ = digits_model(kind)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(d / f"{kind}.safetensors"))
    return d


def _detect(files, kind, budget_overrides=None, policy=None, trusted="trusted.npz", **flags):
    request = scan.build_request(policy, budget_level="fast", budget_overrides=budget_overrides,
                                 arch="resnet8", **flags)
    return scan.detect(files / f"{kind}.safetensors", files / trusted, request)


@pytest.fixture(scope="module")
def backdoor_scan(digits_files):
    return _detect(digits_files, "badnets", canary=False)


def test_backdoored_model_fails_the_gate(backdoor_scan):
    r = backdoor_scan
    assert r.verdict == scan.VERDICT_BACKDOOR
    assert r.detection["top_class"] == 0 and r.detection["model_score"] >= 3.5
    assert r.trusted["clean_accuracy"] > 0.8
    doc = json.loads(json.dumps(r.to_dict(), default=str))
    assert doc["settings"]["method"] == "mask" and doc["model"]["sha256"]


def test_clean_model_passes_only_with_a_detected_canary(digits_files):
    r = _detect(digits_files, "clean")
    assert r.verdict in (scan.VERDICT_PASS, scan.VERDICT_INCONCLUSIVE)
    assert r.canary is not None
    if r.verdict == scan.VERDICT_PASS:
        assert r.canary["implanted"] and r.canary["detected"]
    else:
        assert not r.canary["detected"]


def test_wrong_class_map_is_inconclusive(digits_files, tmp_path):
    """Implausibly low clean accuracy (e.g. a scrambled class map) never yields a verdict."""
    with np.load(digits_files / "trusted.npz") as z:
        x, y = z["x"], z["y"]
    np.savez(tmp_path / "scrambled.npz", x=x, y=(y + 3) % 10)
    r = _detect(digits_files, "badnets", trusted=tmp_path / "scrambled.npz")
    assert r.verdict == scan.VERDICT_INCONCLUSIVE and r.detection is None
    assert "clean accuracy" in r.reasons[0]


def test_undetected_canary_is_inconclusive(digits_files, monkeypatch):
    from scanner.scan.canary import CanaryImplant

    def failed_implant(model, *a, **k):
        return CanaryImplant(model, 3, 0.1, 0.9, 0.9, 10, False, ["simulated failure"])

    monkeypatch.setattr("scanner.scan.canary.implant_canary", failed_implant)
    monkeypatch.setattr(detect_job, "run_detection", _never_flags(detect_job.run_detection))
    r = _detect(digits_files, "clean")
    assert r.verdict == scan.VERDICT_INCONCLUSIVE and r.canary["detected"] is False


def _never_flags(real):
    def run(*a, **k):
        det, rep = real(*a, **k)
        det.model_score = -1.0
        det.flagged = []
        return det, rep
    return run


def test_cli_exit_codes_follow_the_verdict(monkeypatch, digits_files, backdoor_scan, capsys):
    for verdict, code in ((scan.VERDICT_BACKDOOR, 1), (scan.VERDICT_PASS, 0),
                          (scan.VERDICT_INCONCLUSIVE, 3)):
        res = backdoor_scan
        monkeypatch.setattr(scan, "detect", lambda *a, _v=verdict, **k: _with_verdict(res, _v))
        args = [str(digits_files / "badnets.safetensors"), "--arch", "resnet8", "--trusted",
                str(digits_files / "trusted.npz"), "--json"]
        assert main(args) == code  # default command: `scan MODEL ...` means `scan detect`
        assert json.loads(capsys.readouterr().out)["verdict"] == verdict


def _with_verdict(res, verdict):
    import copy

    r = copy.copy(res)
    r.verdict = verdict
    return r


def test_cli_input_errors(digits_files, tmp_path, capsys):
    assert main([str(digits_files / "badnets.safetensors"), "--trusted",
                 str(digits_files / "trusted.npz")]) == 2  # no --arch
    assert main([str(digits_files / "badnets.safetensors"), "--arch", "resnet8", "--trusted",
                 str(tmp_path / "missing")]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[gate]\ncti_treshold = 0.3\n")
    assert main([str(digits_files / "badnets.safetensors"), "--arch", "resnet8", "--trusted",
                 str(digits_files / "trusted.npz"), "--config", str(bad)]) == 2
    assert "cti_treshold" in capsys.readouterr().err


def test_real_subprocess_scan(digits_files):
    """`scan MODEL` as installed: real scan, exit 1, pure JSON on stdout, progress on stderr."""
    import shutil

    exe = shutil.which("scan")
    cmd = [exe] if exe else [sys.executable, "-m", "scanner.cli"]
    p = subprocess.run([*cmd, str(digits_files / "badnets.safetensors"), "--arch", "resnet8",
                        "--trusted", str(digits_files / "trusted.npz"), "--budget", "fast",
                        "--no-canary", "--json"], capture_output=True, text=True, timeout=900)
    assert p.returncode == 1, p.stderr
    assert json.loads(p.stdout)["verdict"] == "backdoor"  # stdout is exactly one JSON document
    # not a terminal: plain, labelled, periodic progress lines (no carriage returns, no ANSI)
    lines = [ln for ln in p.stderr.splitlines() if "step" in ln]
    assert any(ln.strip().startswith("scan: trigger inversion: step") for ln in lines), p.stderr
    assert any("100%" in ln for ln in lines)
    assert "\r" not in p.stderr and "\x1b[" not in p.stderr


def test_policy_validation(tmp_path):
    assert load_policy().gate.method == "mask"
    with pytest.raises(Exception, match="gate.method"):
        policy_from_dict({"gate": {"method": "magic"}})
    with pytest.raises(Exception, match="must be float"):
        policy_from_dict({"gate": {"cti_threshold": "high"}})
    with pytest.raises(Exception, match="outside"):
        policy_from_dict({"repair": {"max_cda_drop": 2.0}})
    with pytest.raises(Exception, match="unknown section"):
        policy_from_dict({"gates": {}})
    assert policy_from_dict({"gate": {"cti_threshold": 1}}).gate.cti_threshold == 1.0


def test_seeded_scan_is_repeatable(digits_files):
    def run(seed):
        return _detect(digits_files, "badnets", {"invert_steps": 20}, canary=False, seed=seed)
    l1 = [[s["trigger_l1"] for s in run(seed).detection["per_class"]] for seed in (7, 7, 8)]
    assert l1[0] == l1[1] and l1[0] != l1[2]


def test_non_finite_scores_are_inconclusive(digits_files, monkeypatch):
    real = detect_job.run_detection

    def nan_run(*a, **k):
        det, rep = real(*a, **k)
        det.per_class[3].trigger_l1 = float("nan")
        return det, rep

    monkeypatch.setattr(detect_job, "run_detection", nan_run)
    r = _detect(digits_files, "clean", {"invert_steps": 10})
    assert r.verdict == scan.VERDICT_INCONCLUSIVE and "non-finite" in r.reasons[0]


@pytest.mark.parametrize("scope", ["all", "target"])
def test_canary_flagged_on_the_wrong_class_does_not_count(scope, digits_files, monkeypatch):
    """A pass needs the canary found at its own target, not any false alarm. Scope "all"
    re-scans every class of the copy, "target" only the implanted one."""
    real = detect_job.run_detection
    calls = []

    def run(*a, **k):
        det, rep = real(*a, **k)
        calls.append(k.get("classes"))
        for s in det.per_class:  # first call: the real model, never flagged;
            s.score = -1.0       # second: the canary, flagged only on a class != its target
        det.model_score = -1.0 if len(calls) == 1 else 99.0
        if len(calls) > 1:
            det.per_class[0].score = 99.0
        return det, rep

    from scanner.scan.canary import CanaryImplant

    monkeypatch.setattr("scanner.scan.canary.implant_canary",
                        lambda model, *a, **k: CanaryImplant(model, 5, 1.0, 0.9, 0.9, 1, True))
    monkeypatch.setattr(detect_job, "run_detection", run)
    r = _detect(digits_files, "clean", {"invert_steps": 10},
                policy=policy_from_dict({"gate": {"canary_scope": scope}}),
                canary_mode="sequential")
    assert len(calls) == 2 and r.canary["top_class"] == 0
    assert calls == [None, [5] if scope == "target" else None] and r.canary["scope"] == scope
    assert r.canary["detected"] is False and r.verdict == scan.VERDICT_INCONCLUSIVE


def test_parallel_canary_computes_what_the_sequential_one_does(digits_files):
    """The canary beside the main detection (one thread each) must give the record the canary
    after it gives at one thread: same loops, same seeds, only the schedule differs."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        par = _detect(digits_files, "clean", canary_mode="parallel")
        assert torch.get_num_threads() == 2  # the split is undone
        torch.set_num_threads(1)
        seq = _detect(digits_files, "clean", canary_mode="sequential")
    finally:
        torch.set_num_threads(before)
    assert par.run["canary_parallel"] and not seq.run["canary_parallel"]
    assert par.canary == seq.canary and "model_score" in par.canary
    assert par.detection["model_score"] == seq.detection["model_score"]
    assert par.verdict == seq.verdict and "canary_wait_s" in par.timings


def test_flagged_model_stops_the_parallel_canary(digits_files):
    import threading

    r = _detect(digits_files, "badnets", canary_mode="parallel")
    assert r.verdict == scan.VERDICT_BACKDOOR and r.canary is None
    assert r.run["canary_parallel"] and "canary_s" not in r.timings
    assert not any(t.name == "scanner-background" and t.is_alive() for t in threading.enumerate())


def test_parallel_canary_refused_where_it_cannot_run(digits_files):
    from scanner.errors import InputError

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with pytest.raises(InputError, match="canary-mode"):
            _detect(digits_files, "clean", canary_mode="parallel")
        with pytest.raises(InputError, match="--canary-mode must be one of"):
            _detect(digits_files, "clean", canary_mode="bogus")
        r = _detect(digits_files, "clean", {"invert_steps": 10}, canary=False,
                    canary_mode="auto", method="mask")
        assert not r.run["canary_parallel"]
    finally:
        torch.set_num_threads(before)


def test_report_dir_from_a_real_scan(monkeypatch, digits_files, backdoor_scan, tmp_path, capsys):
    """`--report-dir` after a real scan: every format parses and agrees with the verdict."""
    import xml.etree.ElementTree as ET

    from scanner.report.schema import validate_report

    monkeypatch.setattr(scan, "detect", lambda *a, **k: backdoor_scan)
    monkeypatch.chdir(digits_files)
    out = tmp_path / "rep"
    assert main(["badnets.safetensors", "--arch", "resnet8", "--trusted", "trusted.npz",
                 "--report-dir", str(out), "--quiet"]) == 1
    doc = json.loads((out / "report.json").read_text())
    assert validate_report(doc) == [] and doc["verdict"] == "backdoor"
    assert doc["gate"]["exit_code"] == 1 and doc["detection"]["top_class"] == 0
    pngs = {p.name for p in (out / "triggers").glob("*.png")}
    # per class: the reversed trigger, and a trusted image before and after stamping it
    assert pngs == {f"class_{c}{s}.png" for c in range(10) for s in ("", "_before", "_after")}
    sarif = json.loads((out / "report.sarif").read_text())
    res = sarif["runs"][0]["results"]
    assert [r["ruleId"] for r in res] == ["BDS001"]
    loc = res[0]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "badnets.safetensors" and "region" not in loc
    suite = ET.parse(out / "report.junit.xml").getroot().find("testsuite")
    assert suite.get("failures") == "1" and suite.get("errors") == "0"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 10
    assert "backdoor" in (out / "report.md").read_text().lower()


def test_repair_writes_a_verified_model_and_never_touches_the_input(digits_files, tmp_path, capsys):
    import hashlib

    from scanner.io.loader import load_model

    src = digits_files / "badnets.safetensors"
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    out = tmp_path / "fixed.onnx"
    code = main(["repair", str(src), "--arch", "resnet8", "--trusted",
                 str(digits_files / "trusted.npz"), "--out", str(out), "--budget", "fast",
                 "--defense", "nc_repair", "--json", "--quiet"])
    doc = json.loads(capsys.readouterr().out)
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    assert doc["status"] == "repaired" and doc["defense"] == "nc_repair"
    assert code == (1 if doc["rescan"]["still_suspected"] else 0) == doc["exit_code"]
    assert doc["repair"]["cda_drop"] <= 0.02 + 1e-9 and doc["repair"]["moved"]
    assert doc["output"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    m = load_model(out)  # the export imports back and matches onnxruntime
    assert m.parity.passed and m.num_classes == 10
    assert not list(tmp_path.glob(".*tmp"))
    # the default repair (Pivotal Tuning, focused on the class a mask inversion of the budget's
    # length picks), safetensors out, no re-scan: reloads under --arch
    out2 = tmp_path / "fixed.safetensors"
    assert main(["repair", str(src), "--arch", "resnet8", "--trusted",
                 str(digits_files / "trusted.npz"), "--out", str(out2), "--budget", "fast",
                 "--no-rescan", "--json", "--quiet"]) == 0
    notes = json.loads(capsys.readouterr().out)["repair"]["notes"]
    assert any("unlearning focused on class" in n and "a 100-step mask inversion" in n
               for n in notes), notes
    assert load_model(out2, arch="resnet8").num_classes == 10


def test_repair_reuses_the_scan_report_of_the_same_file(digits_files, backdoor_scan, tmp_path,
                                                        capsys):
    """`scan --report-dir` then `scan repair --from-report`: the focus class comes from the
    report (no second inversion); a report of another file or a defense that cannot use it is
    refused before any work."""
    from scanner.report.writer import write_reports

    rep = tmp_path / "rep"
    write_reports(backdoor_scan.to_dict(), rep, formats=("json",))
    short = tmp_path / "short.toml"  # the focus note is the subject, not the repair's quality
    short.write_text("[repair]\ndefense = \"pivotal\"\nmax_cda_drop = 1.0\n"
                     "[repair.params]\nsteps = 10\neval_every = 5\n")
    base = [str(digits_files / "badnets.safetensors"), "--arch", "resnet8", "--trusted",
            str(digits_files / "trusted.npz"), "--budget", "fast", "--quiet",
            "--config", str(short)]
    out = tmp_path / "fixed.safetensors"
    assert main(["repair", *base, "--out", str(out), "--no-rescan", "--json",
                 "--from-report", str(rep / "report.json")]) == 0
    notes = json.loads(capsys.readouterr().out)["repair"]["notes"]
    focus = [n for n in notes if "unlearning focused on class" in n]
    assert focus == [f"unlearning focused on class {backdoor_scan.detection['top_class']} (50% of "
                     f"triggered images; mask score "
                     f"{backdoor_scan.detection['model_score']:.2f} from the scan report "
                     f"report.json)"], notes
    # the terminal summary says it too
    assert main(["repair", *base, "--out", str(tmp_path / "t.safetensors"), "--no-rescan",
                 "--from-report", str(rep / "report.json")]) == 0
    assert "from the scan report report.json" in " ".join(capsys.readouterr().out.split())
    other = [str(digits_files / "clean.safetensors"), *base[1:]]
    assert main(["repair", *other, "--out", str(tmp_path / "c.onnx"),
                 "--from-report", str(rep / "report.json")]) == 2
    assert "another model file" in capsys.readouterr().err
    assert main(["repair", *base, "--out", str(tmp_path / "n.onnx"), "--defense", "fine_pruning",
                 "--from-report", str(rep / "report.json")]) == 2
    assert "pivotal defense only" in capsys.readouterr().err
    assert not (tmp_path / "c.onnx").exists() and not (tmp_path / "n.onnx").exists()


def test_repair_that_does_not_move_writes_nothing(digits_files, tmp_path, monkeypatch, capsys):
    from scanner.defenses import registry
    from scanner.defenses.base import RepairResult

    def frozen(pivot, *a, **k):
        return RepairResult(pivot, 0.9, 0, 0.9, [], False, 0.0, ["nothing within budget"])

    real = registry.get_defense

    def fake(name):
        cfg, _ = real(name)
        return cfg, frozen
    monkeypatch.setattr(registry, "get_defense", fake)
    out = tmp_path / "fixed.onnx"
    assert main(["repair", str(digits_files / "badnets.safetensors"), "--arch", "resnet8",
                 "--trusted", str(digits_files / "trusted.npz"), "--out", str(out),
                 "--budget", "fast", "--quiet"]) == 3
    assert not out.exists() and "nothing was written" in capsys.readouterr().out


def test_repair_input_errors(digits_files, tmp_path, capsys):
    base = [str(digits_files / "badnets.safetensors"), "--arch", "resnet8", "--trusted",
            str(digits_files / "trusted.npz")]
    assert main(["repair", *base, "--out", str(tmp_path / "x.pt")]) == 2
    assert main(["repair", *base, "--out", str(tmp_path / "x.onnx"), "--defense", "magic"]) == 2
    assert main(["repair", *base, "--out", str(digits_files / "badnets.safetensors")]) == 2
    assert "overwrite" in capsys.readouterr().err
