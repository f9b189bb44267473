"""Policies (discovery, budgets, waivers), the gate decision, `scan init`, and `scan selftest`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from scanner import scan
from scanner.cli import main
from scanner.errors import InputError
from scanner.gate import decide
from scanner.policy import (DEFAULT_POLICY, Policy, find_policy, load_policy, policy_from_dict,
                            render_policy_template)

SHA = "ab" * 32
TODAY = dt.date(2026, 11, 25)


def test_shipped_default_policy_is_the_rendered_template():
    """rules/default.toml is generated from the documented dataclasses: no second source."""
    assert DEFAULT_POLICY.read_text() == render_policy_template() + "\n"
    p = load_policy(DEFAULT_POLICY)
    assert p.gate == Policy().gate and p.repair == Policy().repair and not p.waivers


def test_discovery_order(tmp_path, monkeypatch):
    (tmp_path / ".git").mkdir()
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert find_policy(cwd=sub).source == "built-in defaults"
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    assert find_policy(cwd=sub).source == "built-in defaults"  # no [tool.scan]: ignored
    (tmp_path / "pyproject.toml").write_text("[tool.scan.gate]\nmask_threshold = 4.0\n")
    p = find_policy(cwd=sub)
    assert p.gate.mask_threshold == 4.0 and p.source.endswith("pyproject.toml")
    (tmp_path / "a" / "scan.toml").write_text("[gate]\nmask_threshold = 5.0\n")
    assert find_policy(cwd=sub).gate.mask_threshold == 5.0  # nearer scan.toml wins
    explicit = tmp_path / "x.toml"
    explicit.write_text("[gate]\ncanary = false\n")
    p = find_policy(explicit, cwd=sub)
    assert p.gate.canary is False and p.gate.mask_threshold == 3.5


def test_discovery_stops_at_the_repository_root(tmp_path):
    (tmp_path / "scan.toml").write_text("[gate]\nmask_threshold = 9.0\n")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    assert find_policy(cwd=repo).source == "built-in defaults"


@pytest.mark.parametrize("doc,key", [
    ({"gate": {"mask_treshold": 3}}, "gate.mask_treshold"),
    ({"gate": {"canary": "yes"}}, "gate.canary"),
    ({"repair": {"defense": "magic"}}, "repair.defense"),
    ({"budget": {"tpu": {}}}, "budget.tpu"),
    ({"budget": {"cpu": {"huge": {}}}}, "budget.cpu.huge"),
    ({"budget": {"cpu": {"fast": {"invert_steps": 0}}}}, "budget.cpu.fast.invert_steps"),
    ({"budget": {"cpu": {"fast": {"steps": 3}}}}, "budget.cpu.fast.steps"),
    ({"waivers": [{"sha256": SHA, "rule": "BDS001", "reason": "x"}]}, "expires"),
    ({"waivers": [{"sha256": "abc", "rule": "BDS001", "reason": "x", "expires": TODAY}]},
     "sha256"),
    ({"waivers": [{"sha256": SHA, "rule": "BDS002", "reason": "x", "expires": TODAY}]},
     "cannot be waived"),
    ({"waivers": [{"sha256": SHA, "rule": "BDS001", "reason": "x", "expires": "soon"}]},
     "expires"),
    ({"waivers": [{"sha256": SHA, "rule": "BDS001", "reason": "x", "expires": TODAY,
                   "owner": "me"}]}, "waivers[0].owner"),
])
def test_bad_config_names_the_key(doc, key):
    with pytest.raises(InputError, match=key.replace("[", r"\[").replace("]", r"\]")):
        policy_from_dict(doc)


def test_budget_overrides_from_policy_and_flags():
    p = policy_from_dict({"budget": {"cpu": {"fast": {"invert_steps": 7}}}})
    assert p.budget_for("cpu", "fast").invert_steps == 7
    assert p.budget_for("cpu", "fast", invert_steps=9).invert_steps == 9  # flags win
    assert p.budget_for("cpu", "standard").invert_steps == Policy().budget_for("cpu", "standard").invert_steps
    assert p.budget_for("cuda", "fast").invert_steps == Policy().budget_for("cuda", "fast").invert_steps


def _waived(expires, rule="backdoor-suspected", sha=SHA):
    return policy_from_dict({"waivers": [{"sha256": sha.upper(), "rule": rule,
                                          "reason": "vendor watermark", "expires": expires}]})


def test_waiver_applies_until_its_expiry_date():
    assert decide("backdoor", SHA, Policy(), TODAY).exit_code == 1
    d = decide("backdoor", SHA, _waived(TODAY), TODAY)  # expires at the end of its day
    assert d.exit_code == 0 and d.waived and d.waivers[0]["status"] == "applied"
    assert "vendor watermark" in d.notes[0]
    d = decide("backdoor", SHA, _waived("2026-11-24"), TODAY)
    assert d.exit_code == 1 and not d.waived and d.waivers[0]["status"] == "expired"
    assert "expired on 2026-11-24" in d.notes[0]
    d = decide("backdoor", SHA, _waived(TODAY, sha="cd" * 32), TODAY)  # another model
    assert d.exit_code == 1 and d.waivers == []


def test_waiver_never_turns_inconclusive_into_pass():
    assert decide("inconclusive", SHA, _waived(TODAY), TODAY).exit_code == 3
    assert decide("pass", SHA, _waived(TODAY), TODAY).exit_code == 0


def test_init_writes_a_loadable_commented_policy(tmp_path, capsys):
    out = tmp_path / "scan.toml"
    assert main(["init", str(out)]) == 0
    text = out.read_text()
    assert text.count("\n# ") > 10 and "[[waivers]]" in text
    assert load_policy(out).gate == Policy().gate
    assert main(["init", str(out)]) == 2  # never overwrites silently
    assert "--force" in capsys.readouterr().err
    assert main(["init", str(out), "--force"]) == 0


@pytest.fixture()
def fake_detect(monkeypatch):
    """scan.detect replaced by a canned backdoor verdict (the scan itself is tested elsewhere)."""
    def run(model, trusted, request, **kw):
        return scan.ScanResult(
            "backdoor", ["mask model score 6.0 >= threshold 3.5"],
            {"path": str(model), "sha256": SHA, "format": "onnx", "num_classes": 2,
             "class_names": ["a", "b"], "spec": {}, "import_notes": []},
            {"source": str(trusted), "images": 10, "clean_accuracy": 0.9, "notes": []}, request,
            detection={"method": "mask", "model_score": 6.0, "flagged": [1],
                       "top_class": 1, "wall_s": 1.0, "notes": [],
                       "per_class": [{"cls": 0, "score": 0.1, "asr_pivot": 0.5, "asr_tuned": None,
                                      "trigger_l1": 50.0, "anomaly_index": 0.1},
                                     {"cls": 1, "score": 6.0, "asr_pivot": 1.0, "asr_tuned": None,
                                      "trigger_l1": 3.0, "anomaly_index": 6.0}]},
            timings={"load_s": 0.1})
    monkeypatch.setattr(scan, "detect", run)


def test_cli_waiver_and_expiry(tmp_path, fake_detect, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    cfg = tmp_path / "scan.toml"
    base = [str(model), "--trusted", str(tmp_path), "--config", str(cfg), "--json"]
    cfg.write_text(f'[[waivers]]\nsha256 = "{SHA}"\nrule = "BDS001"\nreason = "accepted"\n'
                   f"expires = {dt.date.today() + dt.timedelta(days=1)}\n")
    assert main(base) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "backdoor" and doc["gate"]["waived"] is True
    assert doc["waivers"][0]["status"] == "applied"
    cfg.write_text(f'[[waivers]]\nsha256 = "{SHA}"\nrule = "BDS001"\nreason = "accepted"\n'
                   f"expires = {dt.date.today() - dt.timedelta(days=1)}\n")
    assert main(base) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["gate"]["waived"] is False and doc["waivers"][0]["status"] == "expired"
    assert doc["gate"]["exit_code"] == 1


def test_cli_finds_scan_toml_in_the_working_directory(tmp_path, fake_detect, capsys, monkeypatch):
    (tmp_path / ".git").mkdir()
    (tmp_path / "scan.toml").write_text("[gate]\nmask_threshold = 4.5\n")
    monkeypatch.chdir(tmp_path)
    assert main(["m.onnx", "--trusted", ".", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["settings"]["policy_source"].endswith("scan.toml")


def test_selftest_fixtures_exist_in_a_checkout():
    from scanner.scan.selftest_job import default_cases

    cases = default_cases()
    assert [c.expected for c in cases] == ["pass", "backdoor"]
    assert all(Path(c.model).stat().st_size > 10_000 for c in cases)


def test_selftest_missing_fixtures_is_an_input_error(tmp_path):
    from scanner.scan.selftest_job import default_cases

    with pytest.raises(InputError, match="fixtures not found"):
        default_cases(tmp_path)


def test_no_color_is_honoured(tmp_path, fake_detect, capsys, monkeypatch):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert main([str(model), "--trusted", str(tmp_path)]) == 1
    assert "\x1b[" in capsys.readouterr().out  # colour when forced...
    monkeypatch.setenv("NO_COLOR", "1")
    assert main([str(model), "--trusted", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "\x1b[" not in out and "BACKDOOR" in out  # ...and none with NO_COLOR


def test_step_summary_is_appended(tmp_path, fake_detect, capsys, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    assert main([str(model), "--trusted", str(tmp_path), "--quiet"]) == 1
    text = summary.read_text()
    assert text.startswith("# earlier step\n") and "backdoor" in text.lower()


def test_repair_params_are_checked_against_the_defense_and_reach_its_config(monkeypatch):
    """[repair.params] (what `scan eval search` writes) is validated at load and used by repair."""
    pol = policy_from_dict({"repair": {"defense": "pivotal", "params": {"unlearn": 1.0,
                                                                       "steps": 7}}})
    assert pol.repair_params == {"unlearn": 1.0, "steps": 7}
    with pytest.raises(InputError, match="unlearnn"):
        policy_from_dict({"repair": {"params": {"unlearnn": 1.0}}})  # a typo fails at load
    with pytest.raises(InputError, match="repair.params.unlearn"):
        policy_from_dict({"repair": {"params": {"unlearn": [1.0]}}})
    with pytest.raises(InputError, match="prune_rate"):  # a knob of another defense
        policy_from_dict({"repair": {"defense": "pivotal", "params": {"prune_rate": 0.5}}})
    for key in ("max_cda_drop", "seed"):  # they have their own keys/flags: no quiet override
        with pytest.raises(InputError, match=key):
            policy_from_dict({"repair": {"params": {key: 0.5}}})

    seen = {}
    from scanner.defenses import registry

    real = registry.get_defense

    def spy(name):
        d = real(name)

        def run(model, split, cfg, **kw):
            seen["cfg"] = cfg
            raise RuntimeError("stop after the config is built")
        return d._replace(run=run)

    monkeypatch.setattr(registry, "get_defense", spy)
    request = scan.build_request(pol, seed=3, budget_level="fast")
    budget = request.budget
    with pytest.raises(RuntimeError, match="stop after"):
        scan.run_defense(None, scan.TrustedSplit(_Split(), _Split()), request)
    cfg = seen["cfg"]
    assert cfg.unlearn == 1.0 and cfg.steps == 7  # the policy's knobs beat the budget's 150 steps
    assert cfg.batch_size == budget.repair_batch and cfg.seed == 3


class _Split:
    x = y = None
