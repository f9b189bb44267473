"""scanner.lab: games, metrics, resume, tables, plots, self-poisoning search, benchmarks, CLI.

The games run on a 2-conv CNN over 8x8 synthetic images (4 classes, one template each) poisoned
by the real BadNets attack with a 3x3 patch; a fake builder trains those in about a second and
counts its calls, so resuming can be checked without CIFAR-10.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from scanner.attacks import get_attack
from scanner.budget import Budget
from scanner.classifier import SplitClassifier
from scanner.errors import InputError
from scanner.io.data import TrustedData
from scanner.lab.cli import eval_app
from scanner.lab.data import GameData
from scanner.lab.detectability import detection_score, run_detectability
from scanner.lab.meter import Meter
from scanner.lab.metrics import auc_with_uncertainty, select_eta
from scanner.lab.parsing import parse_grid, parse_r
from scanner.lab.robustness import robustness_game, run_robustness
from scanner.lab.rows import RowStore, row_key
from scanner.lab.search import self_poison_search
from scanner.lab.search_policy import write_policy
from scanner.lab.tables import format_table, table2, table3
from scanner.lab.zoo import Built, ZooSpec, make_recipe
from scanner.scan import CanaryConfig
from scanner.io.spec import InputSpec
from scanner.ops.metrics import roc_auc

K = 4
SPEC = InputSpec(height=8, width=8)
TINY = {"steps": 6, "eval_every": 3, "batch_size": 32, "augment": False}


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, K)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.relu(self.c2(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def make_data(n: int, g: torch.Generator):
    templates = torch.rand(K, 3, 8, 8, generator=torch.Generator().manual_seed(123))
    y = torch.arange(n) % K
    return (0.6 * templates[y] + 0.4 * torch.rand(n, 3, 8, 8, generator=g)).clamp(0, 1), y


def tiny_attack(recipe):
    return get_attack("badnets", m=recipe.m, target=recipe.target, seed=recipe.seed,
                      size_frac=0.375) if recipe.attack else None


class FakeBuilder:
    """Trains the tiny CNN for a recipe (attack, m, seed); counts calls; memoises by key."""

    def __init__(self, data: GameData) -> None:
        self.data, self.calls, self._cache = data, 0, {}

    def __call__(self, recipe) -> Built:
        self.calls += 1
        attack = tiny_attack(recipe)
        if recipe.key() not in self._cache:
            d = self.data
            ps = attack.poison(d.x_train, d.y_train) if attack else None
            x, y = (ps.x, ps.y) if ps is not None else (d.x_train, d.y_train)
            g = torch.Generator().manual_seed(recipe.seed)
            torch.manual_seed(recipe.seed)
            net = TinyCNN()
            opt = torch.optim.Adam(net.parameters(), lr=0.01)
            for _ in range(300):
                idx = torch.randint(0, len(y), (64,), generator=g)
                loss = F.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            self._cache[recipe.key()] = {k: v.clone() for k, v in net.state_dict().items()}
        net = TinyCNN()
        net.load_state_dict(self._cache[recipe.key()])
        return Built(SplitClassifier(net.eval(), SPEC), attack, {})


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(one_thread) -> GameData:
    g = torch.Generator().manual_seed(0)
    x, y = make_data(480, g)
    xp, yp = make_data(240, g)
    xt, yt = make_data(200, g)
    return GameData(x, y, xp, yp, xt, yt)


@pytest.fixture(scope="module")
def builder(data) -> FakeBuilder:
    return FakeBuilder(data)


SPEC_ZOO = ZooSpec(arch="tiny", train_size=480, epochs=1)
# The gate's canary (a quarter of each batch poisoned) is sized for CIFAR nets; the one-epoch
# 8x8 model here needs half the batch and more steps for the implant to take.
TINY_CANARY = CanaryConfig(poison_frac=0.5, steps=600)


# --------------------------------------------------------------------------- metrics


def test_select_eta_hand_made_trajectory():
    traj = [{"step": 0, "test_cda": 0.90, "asr": 0.99},
            {"step": 25, "test_cda": 0.895, "asr": 0.60},
            {"step": 50, "test_cda": 0.88, "asr": 0.10},  # exactly at the Delta floor: counts
            {"step": 75, "test_cda": 0.879, "asr": 0.02},  # just below: excluded
            {"step": 100, "test_cda": 0.70, "asr": 0.0}]
    e = select_eta(traj, 0.02)
    assert (e["eta"], e["step"], e["cda"], e["eligible"]) == (0.10, 50, 0.88, 3)
    assert select_eta(traj, 0.25)["eta"] == 0.0
    assert select_eta(traj, 0.0)["eta"] == 0.99  # only the unrepaired model
    # ties on ASR go to the higher CDA
    tie = [{"step": 0, "test_cda": 0.9, "asr": 0.5}, {"step": 1, "test_cda": 0.89, "asr": 0.1},
           {"step": 2, "test_cda": 0.895, "asr": 0.1}]
    assert select_eta(tie, 0.02)["step"] == 2
    assert select_eta(tie, 0.02, pivot_cda=0.95)["eligible"] == 0


def test_roc_auc_hand_checked():
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert roc_auc(scores, labels) == 0.75
    u = auc_with_uncertainty(scores, labels, n_boot=400, seed=1)
    assert u["auc"] == 0.75 and u["n_pos"] == 2 and u["n_neg"] == 2
    assert 0 < u["std"] < 0.5 and 0 <= u["ci_low"] <= 0.75 <= u["ci_high"] <= 1
    assert auc_with_uncertainty([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])["std"] == 0.0  # always perfect
    nan = auc_with_uncertainty([0.1, float("nan"), 0.35, 0.8], [0, 0, 1, 1], n_boot=10)
    assert nan["auc"] == 1.0 and nan["n_dropped"] == 1


def test_parse_r_and_trusted_draw(data):
    assert parse_r("0.01,0.025,0.05") == [0.01, 0.025, 0.05]
    assert parse_r("500") == [500.0]
    with pytest.raises(InputError):
        parse_r("2.5")
    assert data.n_trusted(0.25) == 120 and data.n_trusted(40) == 40
    with pytest.raises(InputError):
        data.n_trusted(0.9)  # 432 > pool of 240
    small, big = data.trusted(0.1, seed=3), data.trusted(0.25, seed=3)
    assert torch.bincount(small.y).tolist() == [12, 12, 12, 12]  # class-balanced
    assert {tuple(v.flatten()[:4].tolist()) for v in small.x} <= \
        {tuple(v.flatten()[:4].tolist()) for v in big.x}  # nested in r


# --------------------------------------------------------------------------- games


def test_robustness_game_on_a_tiny_backdoor(data, builder):
    recipe = make_recipe(SPEC_ZOO, "badnets", 96, 0)
    built = builder(recipe)
    meter = Meter(data.x_test, data.y_test, built.attack)
    before = meter(built.model)
    assert before["test_cda"] > 0.9 and before["asr"] > 0.5
    out = robustness_game(built.model, data.trusted(0.5, 0), meter, "weight_decay",
                          overrides={**TINY, "lr": 1e-2, "max_cda_drop": 0.5})
    traj = out["trajectory"]
    assert [c["step"] for c in traj] == [0, 3, 6]
    assert traj[0]["asr"] == pytest.approx(before["asr"])
    assert traj[0]["test_cda"] == pytest.approx(before["test_cda"])
    assert out["eta"] == select_eta(traj, 0.02)["eta"] <= out["pivot_asr"]
    assert out["deployed_step"] == 6 and out["moved"]
    assert out["eta"] < before["asr"]  # the repair removed some of the backdoor


def test_robustness_zoo_resumes(tmp_path, data, builder):
    store = RowStore(tmp_path / "res.jsonl")
    kw = dict(attacks=[("badnets", 96)], defenses=["weight_decay", "pivotal"], seeds=[0, 1],
              spec=SPEC_ZOO, overrides={"weight_decay": TINY, "pivotal": TINY})
    calls = builder.calls
    c1 = run_robustness(store, builder, data, rs=[0.25], **kw)
    assert c1 == {"ran": 4, "skipped": 0, "models_built": 2} and builder.calls == calls + 2
    rows = [json.loads(x) for x in (tmp_path / "res.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["defense"] for r in rows} == {"weight_decay", "pivotal"}
    r0 = rows[0]
    assert r0["key"] == row_key("robustness", r0["recipe_key"], r0["defense"], 0.25, r0["seed"])
    assert r0["n_trusted"] == 120 and r0["n_tune"] + r0["n_held"] == 120

    store2 = RowStore(tmp_path / "res.jsonl")  # a rerun: nothing to do, nothing built
    c2 = run_robustness(store2, builder, data, rs=[0.25], **kw)
    assert c2 == {"ran": 0, "skipped": 4, "models_built": 0} and builder.calls == calls + 2
    with open(tmp_path / "res.jsonl", "a") as f:
        f.write('{"key": "trunc')  # a run killed mid-line
    store3 = RowStore(tmp_path / "res.jsonl")
    assert store3.skipped == 1
    c3 = run_robustness(store3, builder, data, rs=[0.25, 0.5], **kw)  # only the new r runs
    assert c3 == {"ran": 4, "skipped": 4, "models_built": 2}
    assert {r["r"] for r in store3.rows} == {0.25, 0.5}


def test_detectability_zoo_and_resume(tmp_path, data, builder):
    seen = []

    def fake_detect(model, trusted, num_classes, detector, *, seed, **kw):
        seen.append((detector, seed))
        meter = Meter(data.x_test, data.y_test, get_attack("badnets", m=1, size_frac=0.375))
        return {"score": meter(model)["asr"], "flagged": [], "top_class": 0, "wall_s": 0.0}

    store = RowStore(tmp_path / "det.jsonl")
    kw = dict(attacks=[("badnets", 96)], detectors=["mask", "nc"], repeats=2, spec=SPEC_ZOO,
              r=40, detect_fn=fake_detect)
    c = run_detectability(store, builder, data, **kw)
    assert c == {"ran": 8, "skipped": 0, "models_built": 4}
    assert sorted({s for _, s in seen}) == [0, 1, 10_000, 10_001]
    rows = store.rows
    assert sum(r["label"] for r in rows) == 4 and all(r["n_trusted"] == 40 for r in rows)
    assert all(r["asr"] is None for r in rows if not r["label"])
    c2 = run_detectability(RowStore(tmp_path / "det.jsonl"), builder, data, **kw)
    assert c2 == {"ran": 0, "skipped": 8, "models_built": 0}
    text = table2(store.rows, n_boot=50)
    assert "No backdoor" in text and "AUC mask" in text and "AUC nc" in text


def test_detection_score_runs_the_real_detector(data, builder):
    built = builder(make_recipe(SPEC_ZOO, "badnets", 96, 0))
    tiny_budget = Budget(repair_steps=3, repair_batch=16, invert_steps=3, invert_batch=16,
                         invert_chunk=4, canary_steps=3)
    out = detection_score(built.model, data.trusted(40, 0), K, "mask", budget=tiny_budget)
    assert isinstance(out["score"], float) and 0 <= out["top_class"] < K
    with pytest.raises(InputError):
        detection_score(built.model, data.trusted(40, 0), K, "bogus", budget=tiny_budget)


# --------------------------------------------------------------------------- tables and plots


def _rob_row(attack, m, defense, r, seed, eta, pivot_asr=0.99):
    traj = [{"step": 0, "held_cda": 0.9, "test_cda": 0.90, "asr": pivot_asr},
            {"step": 25, "held_cda": 0.9, "test_cda": 0.89, "asr": (pivot_asr + eta) / 2},
            {"step": 50, "held_cda": 0.89, "test_cda": 0.885, "asr": eta}]
    return {"key": f"{attack}{m}{defense}{r}{seed}", "game": "robustness", "setting": "s",
            "recipe_key": f"{attack}{m}{seed}", "attack": attack, "m": m, "defense": defense,
            "r": r, "seed": seed, "delta": 0.02, "pivot_cda": 0.9, "pivot_asr": pivot_asr,
            "eta": eta, "eta_cda": 0.885, "deployed_asr": eta + 0.01, "trajectory": traj}


def _det_row(attack, m, label, seed, detector, score, cda=0.9, asr=None):
    return {"key": f"{attack}{m}{seed}{detector}", "game": "detectability", "setting": "s",
            "recipe_key": f"{attack}{m}{seed}", "attack": attack, "m": m, "label": label,
            "seed": seed, "detector": detector, "r": 500, "score": score, "cda": cda, "asr": asr}


def hand_rows() -> list[dict]:
    rows = [_det_row("clean", 0, 0, 10_000, "mask", 0.1, 0.95),
            _det_row("clean", 0, 0, 10_001, "mask", 0.4, 0.93),
            _det_row("badnets", 50, 1, 0, "mask", 0.35, 0.94, 0.9),
            _det_row("badnets", 50, 1, 1, "mask", 0.8, 0.92, 1.0),
            _det_row("badnets", 500, 1, 0, "mask", 0.9, 0.92, 1.0),
            _det_row("badnets", 500, 1, 1, "mask", 0.95, 0.92, 1.0)]
    rows += [_rob_row("badnets", 50, d, r, s, eta)
             for d, base in (("pivotal", 0.02), ("weight_decay", 0.10))
             for r in (0.01, 0.05) for s, eta in ((0, base), (1, base + 0.02))]
    return rows


def test_table2_shape_and_auc():
    text = table2(hand_rows(), n_boot=200)
    lines = text.splitlines()
    assert lines[1].split()[:5] == ["attack", "m", "models", "CDA", "ASR"]
    clean = next(ln for ln in lines if ln.startswith("No backdoor"))
    assert "0.940 ± 0.014" in clean
    m50 = next(ln for ln in lines if ln.startswith("badnets") and " 50 " in ln)
    assert "0.95 ± 0.07" in m50 and "0.75 ± " in m50  # ASR mean/std, AUC of the hand case
    m500 = next(ln for ln in lines if ln.startswith("badnets") and " 500 " in ln)
    assert m500.endswith("1.00 ± 0.00")  # perfectly separated: AUC 1, no bootstrap spread
    assert clean.endswith("-")  # no AUC for the clean row
    md = table2(hand_rows(), markdown=True, n_boot=50)
    assert md.splitlines()[2].startswith("| attack | m | models | CDA | ASR | AUC mask |")
    assert "| --- |" in md


def test_table3_shape():
    text = table3(hand_rows())
    header = text.splitlines()[1]
    assert header.split() == ["attack", "m", "ASR", "before", "pivotal", "v1%", "pivotal", "v5%",
                              "weight_decay", "v1%", "weight_decay", "v5%"]
    row = text.splitlines()[3]
    assert row.split()[:3] == ["badnets", "50", "0.99"]
    assert "0.03 ± 0.01" in row and "0.11 ± 0.01" in row
    dep = table3(hand_rows(), metric="deployed_asr", markdown=True)
    assert "0.04 ± 0.01" in dep and dep.count("\n|") >= 3
    assert format_table(["a", "b"], [["x", "1"]]).splitlines()[-1] == "x  1"
    assert table3([]) == "(no robustness rows)"


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    from scanner.lab.plots import detectability_plots, tradeoff_plots

    paths = tradeoff_plots(hand_rows(), tmp_path) + detectability_plots(hand_rows(), tmp_path,
                                                                         n_boot=50)
    assert len(paths) == 3  # two r panels for badnets + one detectability figure
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5_000


def test_plots_without_matplotlib_say_how_to_install(monkeypatch, tmp_path):
    from scanner.lab import plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(InputError) as exc:
        plots.tradeoff_plots(hand_rows(), tmp_path)
    assert "pip install matplotlib" in str(exc.value)


# --------------------------------------------------------------------------- search


def test_search_writes_a_policy_scan_accepts(tmp_path, data, builder):
    from scanner.policy import load_policy

    built = builder(make_recipe(SPEC_ZOO, None, 0, 10_000))  # a clean model
    res = self_poison_search(built.model, TrustedData(data.x_test, data.y_test), K,
                             "weight_decay", parse_grid(["lr=1e-3,1e-2"]), base_overrides=TINY,
                             seed=0, canary_config=TINY_CANARY)
    assert [t["params"] for t in res.trials] == [{"lr": 0.001}, {"lr": 0.01}]
    assert res.canary["asr"] >= 0.5
    assert res.best["eta"] == min(t["eta"] for t in res.trials)
    out = write_policy(res, tmp_path / "rules" / "searched.toml", model="m.onnx", trusted="t/")
    pol = load_policy(out)
    assert pol.repair.defense == "weight_decay" and pol.repair.max_cda_drop == 0.02
    text = out.read_text()
    assert f"\nlr = {res.best['params']['lr']!r}\n" in text and "<- chosen" in text
    assert pol.repair_params["lr"] == res.best["params"]["lr"]  # scan repair --config uses it
    with pytest.raises(InputError):
        write_policy(res, out)  # no silent overwrite
    with pytest.raises(InputError):
        self_poison_search(built.model, TrustedData(data.x_test, data.y_test), K, "weight_decay",
                           {"bogus_knob": [1]})
    with pytest.raises(InputError, match="max_cda_drop"):  # Delta is --max-cda-drop, not a knob
        self_poison_search(built.model, TrustedData(data.x_test, data.y_test), K, "weight_decay",
                           {"max_cda_drop": [0.5]})
    with pytest.raises(InputError):
        parse_grid(["lr"])


# --------------------------------------------------------------------------- CLI


def test_cli_help_documents_every_command():
    runner = CliRunner()
    res = runner.invoke(eval_app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("robustness", "detectability", "search", "tables", "plots", "bench-detect",
                "bench-repair", "bench-precision", "attack-table"):
        assert cmd in res.output
        sub = runner.invoke(eval_app, [cmd, "--help"])
        assert sub.exit_code == 0 and "Examples:" in sub.output, cmd


def test_cli_tables_and_errors(tmp_path, monkeypatch):
    runner = CliRunner()
    p = tmp_path / "res.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in hand_rows()) + "\n")
    res = runner.invoke(eval_app, ["tables", "--results", str(p), "--bootstrap", "50"])
    assert res.exit_code == 0 and "Table 2" in res.output and "Table 3" in res.output
    res = runner.invoke(eval_app, ["tables", "--results", str(p), "--table", "3", "--markdown"])
    assert res.exit_code == 0 and "Table 2" not in res.output and "| badnets |" in res.output
    res = runner.invoke(eval_app, ["tables", "--results", str(tmp_path / "nope.jsonl")])
    assert isinstance(res.exception, InputError)
    import scanner.io.cifar as cifar

    monkeypatch.setattr(cifar, "shared_cifar10_dir", lambda: None)
    res = runner.invoke(eval_app, ["robustness", "--out", str(tmp_path / "r.jsonl"),
                                   "--defenses", "pivotal", "--r", "0.01"])
    assert isinstance(res.exception, InputError) and "CIFAR-10" in str(res.exception)
    res = runner.invoke(eval_app, ["robustness", "--defenses", "bogus"])
    assert isinstance(res.exception, InputError)


def test_recipe_builder_reuses_a_cached_model_under_another_name(tmp_path, data):
    from scanner.lab.zoo import RecipeBuilder

    recipe = make_recipe(ZooSpec(), "badnets", 1000, 100)
    d = tmp_path / recipe.key()
    d.mkdir()
    (d / "zoo_name.onnx").write_bytes(b"")
    (d / "zoo_name.json").write_text(json.dumps({"recipe_key": recipe.key()}))
    (d / "other.onnx").write_bytes(b"")
    (d / "other.json").write_text(json.dumps({"recipe_key": "something-else"}))
    b = RecipeBuilder(tmp_path, data)
    assert b.find_cached(recipe) == d / "zoo_name.onnx"
    assert b.find_cached(make_recipe(ZooSpec(), "badnets", 1000, 101)) is None


def test_bench_detect_summarize_merges_runs_and_computes_auc(tmp_path):
    """Two benchmark runs over halves of a zoo append to one file; --summarize reads it whole.

    Hand check: backdoored scores {0.9, 0.4}, clean {0.5, 0.1}: of 4 (pos, neg) pairs, 3 are
    ordered right (0.9>0.5, 0.9>0.1, 0.4>0.1), so AUC = 0.75. A rerun row replaces the older one.
    """
    def row(name, bd, score, drop=0.0):
        return {"model": name, "backdoored": bd, "target": 1 if bd else None, "arch": "a",
                "cda": 0.7, "asr_before": 0.9 if bd else 0.05, "ratio_score": score,
                "ratio_top": 1, "ratio_s": 3.0, "asr_after": 0.03, "cda_drop_eval": drop}

    # b1's drop is float32's 0.73 - 0.71: exactly the 2-point budget, so it counts
    exact = float(torch.tensor(0.73)) - float(torch.tensor(0.71))
    rows = [row("b1", True, 0.2), row("b2", True, 0.4, 0.03), row("c1", False, 0.5),
            row("c2", False, 0.1), row("b1", True, 0.9, exact)]  # b1 rerun: 0.9 replaces 0.2
    f = tmp_path / "rows.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    res = CliRunner().invoke(eval_app, ["bench-detect", "--summarize", str(f), "--methods", "ratio"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "ROC AUC ratio: 0.750" in out
    assert sum(line.startswith(("b1", "b2", "c1", "c2")) for line in out.splitlines()) == 4
    assert exact > 0.02 and ("2/2 backdoored models at real-trigger ASR <= 0.05, 1/2 also with "
                             "a test CDA drop <= 2 points") in out


@pytest.mark.parametrize("flag", ["--jobs", "--threads"])
def test_bench_detect_refuses_a_nonpositive_worker_count(flag):
    """--jobs 0 would build an empty process pool (an opaque ValueError); say what is wrong."""
    res = CliRunner().invoke(eval_app, ["bench-detect", "--models", "nothing-*.onnx", flag, "0"])
    assert isinstance(res.exception, InputError) and "at least 1" in str(res.exception)


def test_bench_detect_counts_flags_at_the_gate_threshold():
    """mask flags at >= 3.5: backdoored 5.0 (right class) and 4.0 (wrong class), clean 3.6 and
    1.0, so 2/2 backdoored flagged, 1 at the target, and 1/2 clean flagged."""
    from scanner.lab.bench_detect import flag_counts

    rows = [{"backdoored": True, "target": 3, "mask_score": 5.0, "nc_top": 3},
            {"backdoored": True, "target": 3, "mask_score": 4.0, "nc_top": 7},
            {"backdoored": False, "target": 0, "mask_score": 3.6, "nc_top": 1},
            {"backdoored": False, "target": 0, "mask_score": 1.0, "nc_top": 1}]
    assert flag_counts(rows, "mask") == ("mask >= 3.5: backdoored flagged 2/2 (1 at the target), "
                                         "clean flagged 1/2")


def test_bench_repair_counts_the_issue_target_per_config(tmp_path):
    """ASR <= 0.05 and a test-accuracy drop <= 2 points, by the state the repair keeps; a repair
    that never moved counts as a failure whatever its numbers."""
    from scanner.lab.repair_summary import meets_target

    base = {"target": 0, "asr_before": 0.99, "cda_before": 0.70, "kept_step": 300,
            "held_drop": 0.01, "wall_s": 60.0, "trajectory": []}
    rows = [dict(base, model="a.onnx", config="{}", asr_after=0.04, cda_after=0.69, cda_drop=0.01,
                 moved=True),
            dict(base, model="b.onnx", config="{}", asr_after=0.04, cda_after=0.67, cda_drop=0.03,
                 moved=True),
            dict(base, model="a.onnx", config='{"x": 1}', asr_after=0.06, cda_after=0.70,
                 cda_drop=0.0, moved=True),
            dict(base, model="b.onnx", config='{"x": 1}', asr_after=0.0, cda_after=0.70,
                 cda_drop=0.0, moved=False)]
    assert [meets_target(r) for r in rows] == [True, False, False, False]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    runner = CliRunner()
    res = runner.invoke(eval_app, ["bench-repair", "--summarize", str(path)])  # no --models needed
    assert res.exit_code == 0, res.output
    assert ("config {}: 1/2 at ASR <= 0.05 with test CDA drop <= 2 points (2/2 at the ASR "
            "alone)") in res.output
    assert 'config {"x": 1}: 0/2 at ASR <= 0.05' in res.output
    assert "(0/2 at the ASR alone)" in res.output
    res = runner.invoke(eval_app, ["bench-repair"])  # without --summarize, --models is required
    assert isinstance(res.exception, InputError) and "--models" in str(res.exception)
    res = runner.invoke(eval_app, ["bench-repair", "--models", str(path), "--held-views"])
    assert isinstance(res.exception, InputError) and "--trajectory" in str(res.exception)


def test_fixed_views_by_hand():
    """View 0 is the batch, view 1 its mirror, the others reflect-padded shifts of it."""
    from scanner.lab.bench_repair import fixed_views

    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    v = fixed_views(x, shift=1)
    assert v.shape == (16, 1, 4, 4)
    assert torch.equal(v[:2], x) and torch.equal(v[2:4], x.flip(-1))
    # offset (0, 0) moves the image one pixel down and right
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    assert torch.equal(v[4:6], padded[..., 0:4, 0:4])
    assert torch.equal(v[4, 0, 1:, 1:], x[0, 0, :3, :3])
    assert torch.equal(v[12:14], padded[..., 1:5, 0:4])  # (shift, 0): rows kept, columns moved


def test_bench_repair_config_may_set_the_held_out_share():
    """``holdout`` is the trusted split's share, taken out of the PivotalConfig overrides; a bad
    share, a non-object config or an unknown knob is refused before any work (exit 2)."""
    from scanner.lab.bench_repair import parse_config

    assert parse_config("{}") == (0.2, {})
    assert parse_config('{"holdout": 0.4, "focus": 0.5}') == (0.4, {"focus": 0.5})
    for bad in ('{"holdout": 1.0}', '{"holdout": 0}', "[1]", "{"):
        with pytest.raises(InputError):
            parse_config(bad)
    runner = CliRunner()
    for bad in ('{"holdout": 2}', '{"bogus_knob": 1}'):
        res = runner.invoke(eval_app, ["bench-repair", "--models", __file__, "--config", bad])
        assert isinstance(res.exception, InputError), bad


def test_bench_repair_floor_table_takes_the_worst_model_per_class():
    from scanner.lab.repair_summary import floor_lines

    lines = floor_lines([{"model": "a.onnx", "cda": 0.7, "asr": [0.01, 0.06, 0.02]},
                         {"model": "b.onnx", "cda": 0.8, "asr": [0.03, 0.04, 0.00]}], "badnets")
    assert lines[1].split() == ["model", "CDA", "t0", "t1", "t2"]
    assert lines[2].split() == ["a.onnx", "0.700", "0.010", "0.060", "0.020"]
    assert lines[-1].split() == ["max", "0.030", "0.060", "0.020"]


def _job_power(base: int, exp: int = 2) -> tuple[int, int]:
    import os

    if base < 0:
        raise ValueError("negative base")
    return base ** exp, os.getpid()


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_jobs_gives_every_result_in_and_out_of_process(jobs):
    """The --jobs path of the benchmarks: spawned workers, a partial with keyword arguments,
    every result delivered once, a worker's exception raised in the caller."""
    import functools
    import os

    from scanner.lab.jobs import run_jobs

    got = []
    run_jobs(functools.partial(_job_power, exp=3), [(b,) for b in range(6)], jobs, got.append)
    assert sorted(v for v, _ in got) == [0, 1, 8, 27, 64, 125]
    pids = {pid for _, pid in got}
    assert (pids == {os.getpid()}) if jobs == 1 else (os.getpid() not in pids)
    with pytest.raises(ValueError, match="negative base"):
        run_jobs(_job_power, [(2,), (-1,)], jobs, lambda r: None)
    with pytest.raises(ValueError, match="at least 1"):
        run_jobs(_job_power, [(2,)], 0, lambda r: None)


def _bench_row(name: str, v: int) -> dict:
    return {"key": f"k|{name}", "model": name, "v": v}


def test_benchmark_rows_resume_and_model_lookup(tmp_path):
    """A benchmark's rows go to the one row store: a rerun runs only the missing keys, and its
    summary still sees every row; --summarize merges by model (the later row wins). A typo in
    --models or --jobs fails before any work."""
    from scanner.lab.jobs import find_models, run_rows
    from scanner.lab.rows import latest, load_rows

    out = tmp_path / "rows.jsonl"
    ran = []
    work = [(f"k|{n}", (n, i)) for i, n in enumerate(["a", "b"])]
    rows, skipped = run_rows(_bench_row, work, 1, RowStore(out), ran.append)
    assert skipped == 0 and [r["model"] for r in ran] == ["a", "b"] == [r["model"] for r in rows]
    ran.clear()
    work.append(("k|c", ("c", 7)))
    rows, skipped = run_rows(_bench_row, work, 1, RowStore(out), ran.append)
    assert skipped == 2 and [r["model"] for r in ran] == ["c"]
    assert sorted(r["model"] for r in rows) == ["a", "b", "c"]
    rows, skipped = run_rows(_bench_row, [("k|d", ("d", 1))], 1, None)  # no --out: nothing kept
    assert skipped == 0 and len(load_rows(out)) == 3
    legacy = [{"model": "a", "v": 1}, {"model": "b", "v": 2}, {"model": "a", "v": 3}]
    assert sorted((r["model"], r["v"]) for r in latest(legacy, key=lambda r: r["model"])) == [
        ("a", 3), ("b", 2)]
    (tmp_path / "m1.onnx").write_bytes(b"")
    (tmp_path / "m2.onnx").write_bytes(b"")
    pat = str(tmp_path / "*.onnx")
    assert find_models([pat, pat], 1, 1) == [str(tmp_path / "m1.onnx"), str(tmp_path / "m2.onnx")]
    with pytest.raises(InputError, match="no models"):
        find_models([str(tmp_path / "*.pt")], 1, 1)
    with pytest.raises(InputError, match="at least 1"):
        find_models([pat], 0, 1)


def _private_imports(path: Path, lab_only_external: bool) -> list[str]:
    """``from scanner.x import _name`` / ``import scanner._x`` found in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods, names = [node.module], [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            mods, names = [a.name for a in node.names], []
        else:
            continue
        for mod in mods:
            if mod.split(".")[0] != "scanner":
                continue
            if lab_only_external and (mod == "scanner.lab" or mod.startswith("scanner.lab.")):
                continue
            bad = [p for p in mod.split(".") if p.startswith("_") and p != "__future__"]
            bad += [n for n in names if n.startswith("_")]
            found += [f"{path.name}:{node.lineno}: {mod} {b}" for b in bad]
    return found


def test_lab_uses_only_public_names_of_the_product():
    """The lab measures the product as a user meets it: no module of scanner.lab imports an
    underscore-prefixed name from a scanner module outside scanner.lab (and, so that the lab's
    own modules stay swappable, none across lab modules either)."""
    import scanner.lab

    lab = Path(scanner.lab.__file__).parent
    modules = sorted(lab.glob("*.py"))
    assert len(modules) > 10
    assert [f for m in modules for f in _private_imports(m, lab_only_external=True)] == []
    assert [f for m in modules for f in _private_imports(m, lab_only_external=False)] == []


def test_lab_modules_stay_small():
    import scanner.lab

    lab = Path(scanner.lab.__file__).parent
    sizes = {m.name: len(m.read_text().splitlines()) for m in lab.glob("*.py")}
    assert {k: v for k, v in sizes.items() if v > 300} == {}
