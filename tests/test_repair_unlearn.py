"""Online trigger unlearning and pivot distillation (Pivotal Tuning), and the calibrated scans."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from scanner.classifier import SplitClassifier, predict
from scanner.defenses.unlearn import (OnlineTriggers, UnlearnConfig, random_other_class,
                                      trigger_classes, unlearning_loss)
from scanner.io.data import TrustedData
from scanner.io.spec import InputSpec
from scanner.io.trusted_split import TrustedSplit
from scanner.ops.metrics import attack_success_rate

from fixtures.digits import digits_model, split_digits


def _plain_net() -> nn.Module:
    """A conv net without BatchNorm, as an ONNX import with BN folded into Conv looks."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def test_random_other_class_never_the_label():
    y = torch.arange(10).repeat(500)
    c = random_other_class(y, 10, torch.Generator().manual_seed(0))
    assert not torch.any(c == y)
    assert set(c[y == 3].tolist()) == set(range(10)) - {3}


def test_trigger_classes_focus_share_and_never_the_label():
    y = torch.arange(10).repeat(2000)
    g = torch.Generator().manual_seed(0)
    plain = trigger_classes(y, 10, torch.Generator().manual_seed(0))
    # no focus: exactly the uniform draw (no extra random numbers, so old seeds repeat)
    assert torch.equal(plain, random_other_class(y, 10, torch.Generator().manual_seed(0)))
    c = trigger_classes(y, 10, g, focus_cls=3, focus=0.6)
    assert not torch.any(c == y)
    others = y != 3
    # P(class 3) = 0.6 + 0.4 / 9 for labels other than 3; labels 3 keep the uniform draw
    share = float((c[others] == 3).float().mean())
    assert share == pytest.approx(0.6 + 0.4 / 9, abs=0.02)
    assert set(c[y == 3].tolist()) == set(range(10)) - {3}


def test_chase_moves_only_the_triggers_and_prices_the_mask():
    net = _plain_net().eval()
    params = [p.clone() for p in net.parameters()]
    g = torch.Generator().manual_seed(0)
    trig = OnlineTriggers(4, (3, 16, 16), UnlearnConfig(target_fooled=0.0), g, torch.device("cpu"))
    m0 = trig.mask_w.detach().clone()
    x, cls = torch.rand(16, 3, 16, 16), torch.randint(0, 4, (16,), generator=g)
    cost0 = trig.cost
    trig.chase(net, x, cls)
    assert all(torch.equal(p, q) for p, q in zip(params, net.parameters()))
    assert all(p.grad is None for p in net.parameters())
    assert not torch.equal(trig.mask_w.detach(), m0)
    # fooling more than the target (0) raises the mask's price
    assert trig.cost > cost0
    out = trig.stamp(x, cls)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_unlearning_loss_trains_the_model_not_the_triggers():
    net = _plain_net()
    g = torch.Generator().manual_seed(1)
    trig = OnlineTriggers(4, (3, 16, 16), UnlearnConfig(frac=0.5), g, torch.device("cpu"))
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 4, (8,))
    loss, fooled = unlearning_loss(net, trig, x, y, 4, g)
    loss.backward()
    assert 0.0 <= fooled <= 1.0 and torch.isfinite(loss)
    assert all(p.grad is not None for p in net.parameters())
    assert trig.mask_w.grad is None


@pytest.fixture(scope="module")
def digits_split():
    _, _, xt, yt = split_digits()
    return TrustedData(xt, yt).split(0.2, seed=0)


def test_default_pivotal_tuning_removes_a_real_backdoor(digits_split):
    """Digits BadNets (ASR ~1): the default repair must lower the real trigger's ASR a lot
    within the gate's 2-point accuracy budget (suspect found in 100 inversion steps, as
    ``scan repair --budget fast`` does)."""
    from scanner.defenses.pivotal import PivotalConfig, pivotal_tuning

    net, attack = digits_model("badnets")
    tune, held = digits_split
    pivot = SplitClassifier(net, InputSpec())
    target = attack.config.target

    def asr(m):
        return attack_success_rate(predict(m, attack.apply(held.x)), held.y, target)

    before = asr(pivot)
    assert before >= 0.9
    res = pivotal_tuning(pivot, TrustedSplit(tune, held),
                         PivotalConfig(steps=150, eval_every=25, seed=0, focus_steps=100))
    assert res.moved and res.cda_drop <= 0.02
    assert asr(res.model) <= 0.3, res.trajectory
    assert any(k in res.trajectory[-1].losses for k in ("unlearn", "distill"))


def test_focused_repair_finds_the_target_and_reuses_a_given_detection(digits_split):
    """``focus``: the suspect class is the backdoor's target, found by the repair's own mask
    inversion; a given detection is used instead of inverting again; no focus, no note."""
    import dataclasses

    from scanner.defenses.pivotal import PivotalConfig, pivotal_tuning

    net, attack = digits_model("badnets")
    tune, held = digits_split
    pivot = SplitClassifier(net, InputSpec())
    cfg = PivotalConfig(steps=10, eval_every=5, focus=0.5, focus_steps=60, max_cda_drop=1.0)
    res = pivotal_tuning(pivot, TrustedSplit(tune, held), cfg)
    assert res.info["focus_class"] == attack.config.target, res.notes
    assert any("mask inversion" in n for n in res.notes)
    again = pivotal_tuning(pivot, TrustedSplit(tune, held), cfg)
    a, b = again.model.net.state_dict(), res.model.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # seeded: the focused repair repeats
    from scanner.detectors.inversion import InversionConfig
    from scanner.detectors.neural_cleanse import MaskDetector

    det = MaskDetector(InversionConfig(steps=5))(pivot, TrustedSplit(tune, held), 10)
    given = pivotal_tuning(pivot, TrustedSplit(tune, held), cfg, detection=det)
    assert given.info["focus_class"] == det.top_class
    assert any("the given detection" in n for n in given.notes)
    off = pivotal_tuning(pivot, TrustedSplit(tune, held), dataclasses.replace(cfg, focus=0))
    assert "focus_class" not in off.info and not any("focused" in n for n in off.notes)


# --------------------------------------------------------------------------- ratio detector

def test_log_ratio_index_by_hand():
    from scanner.detectors.ratio import log_ratio_index

    r_true = np.array([0.1, 0.2, 0.3, 2.0, 0.2])
    l1_p = np.full(5, 10.0)
    r, idx = log_ratio_index(l1_p, l1_p * np.exp(r_true))
    assert np.allclose(r, r_true)
    # median 0.2, MAD 0.1 -> scale 0.14826; class 3: 1.8 / 0.14826
    assert idx[3] == pytest.approx(1.8 / 0.14826, rel=1e-4)
    assert idx[1] == pytest.approx(0.0) and idx[0] == pytest.approx(-0.1 / 0.14826, rel=1e-4)


@pytest.mark.parametrize("kind", ["badnets", "clean"])
def test_calibrated_scans_flag_the_backdoor_target_only(kind, digits_split, monkeypatch):
    """CTI (default size score) and ratio, end to end through run_detection on real digits
    models (fast inversion budget; 300 repair steps, because at 150 the clean digits model's
    repair was still 3 held-out images below the pivot and nothing was kept).

    The accuracy budget is 5 points here, not the gate's 2: the held-out split has 99 images, so
    2 points is 2 images, and whether the repair lands inside it changed with the CPU the digits
    model was trained on. This test is about what the detectors do with a repair that moved.
    The ratio scan is handed CTI's calibration repair instead of recomputing it: same function,
    same inputs, same seed (repeatability is tested on its own), and 90 s less per model.
    """
    from scanner import scan as jobs
    from scanner.defenses import pivotal

    net, attack = digits_model(kind)
    tune, held = digits_split
    model = SplitClassifier(net, InputSpec())
    base = jobs.build_request(seed=0, budget_level="fast", max_cda_drop=0.05,
                              budget_overrides={"repair_steps": 300})

    def scan(method):
        return jobs.run_detection(model, jobs.TrustedSplit(tune, held), 10,
                                  base.with_method(method))

    results = {"cti": scan("cti")}
    rep = results["cti"][1]
    asked = []
    monkeypatch.setattr(pivotal, "pivotal_tuning",
                        lambda pivot, split, cfg, **k: asked.append(cfg) or rep)
    results["ratio"] = scan("ratio")
    # the calibration is the unfocused repair with the budget's steps, told nothing
    assert [(c.steps, c.focus, c.distill, c.seed) for c in asked] == [(300, 0.0, 1.0, 0)]
    for method, (det, r) in results.items():
        assert r is rep and rep.moved
        if method == "ratio":
            assert det.method == "ratio" and len(det.extra["log_ratio"]) == 10
        else:
            assert det.method == "cti" and len(det.extra["gap"]) == 10
        if kind == "badnets":
            assert det.flagged and det.top_class == attack.config.target, (method, det.extra)
            assert det.model_score >= 3.5
            if method == "cti":  # what CTI found is a trigger the repair removed
                top = det.per_class[det.top_class]
                assert top.asr_pivot - top.asr_tuned >= 0.5
        else:
            assert not det.flagged and det.model_score < 3.5, (method, det.extra)
