"""Baseline repairs (Fine-Pruning, NAD, weight decay, Neural Cleanse) and the defense registry.

Everything runs on a 2-conv CNN over 8x8 synthetic images (4 classes, one fixed template each)
with a 2x2 white-patch backdoor to class 0, trained in a few seconds. The templates are not
mirror-symmetric, so the repairs run without the crop/flip augmentation (``augment=False``).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scanner.classifier import SplitClassifier, predict
from scanner.defenses.base import FinetuneConfig, RepairResult
from scanner.defenses.fine_pruning import (channel_activations, find_prune_target, prune_count,
                                           zero_channels)
from scanner.defenses.nad import attention_loss, attention_map, stage_outputs, tap_features
from scanner.defenses.nc_repair import NCRepairConfig, choose_class, nc_repair
from scanner.defenses.registry import (DEFENSES, canonical_name, get_defense, list_defenses,
                                       make_config, run_by_name)
from scanner.detectors.inversion import InversionConfig, TriggerSet
from scanner.detectors.result import ClassScore, DetectionResult
from scanner.errors import InputError
from scanner.io.spec import InputSpec
from scanner.io.trusted_split import TrustedSplit
from scanner.ops.metrics import attack_success_rate, paired_drop_se

K = 4
SPEC = InputSpec(height=8, width=8)


class TinyCNN(nn.Module):
    def __init__(self, bn: bool = False) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16) if bn else nn.Identity()
        self.fc = nn.Linear(16, K)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.relu(self.bn(self.c2(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class TinyResNet(nn.Module):
    """One downsampling residual block whose 1x1 shortcut conv is traced after the main path."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 16, 3, 2, 1)
        self.conv2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(16)
        self.short = nn.Conv2d(8, 16, 1, 2)
        self.fc = nn.Linear(16, K)

    def forward(self, x):
        x = F.relu(self.stem(x))
        out = self.bn2(self.conv2(F.relu(self.conv1(x))))
        out = F.relu(out + self.short(x))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def stamp(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[:, :, :2, :2] = 1.0
    return x


def make_data(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    templates = torch.rand(K, 3, 8, 8, generator=torch.Generator().manual_seed(123))
    y = torch.arange(n) % K
    x = (0.6 * templates[y] + 0.4 * torch.rand(n, 3, 8, 8, generator=g)).clamp(0, 1)
    return x, y


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(one_thread):
    """(backdoored SplitClassifier, (x_tune, y_tune), (x_held, y_held))."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    x, y = make_data(480, g)
    poison = torch.rand(len(y), generator=g) < 0.2
    xp, yp = x.clone(), y.clone()
    xp[poison] = stamp(x[poison])
    yp[poison] = 0
    net = TinyCNN()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for step in range(250):
        idx = torch.randint(0, len(y), (64,), generator=g)
        loss = F.cross_entropy(net(xp[idx]), yp[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    xt, yt = make_data(240, g)
    model = SplitClassifier(net.eval(), SPEC)
    return model, (xt[:160], yt[:160]), (xt[160:], yt[160:])


def patch_asr(model, x, y) -> float:
    return attack_success_rate(predict(model, stamp(x)), y, 0)


def fresh(tiny) -> SplitClassifier:
    return tiny[0].clone()


FAST_NC = InversionConfig(form="mask", steps=10, batch_size=16, lr=0.1, init_cost=2e-2)
FAST = {"nad": {"teacher_steps": 4}, "nc_repair": {"inversion": FAST_NC}}


def _cfg(name: str, **kw):
    base = {"steps": 6, "eval_every": 3, "batch_size": 32, "augment": False}
    base.update(FAST.get(name, {}))
    base.update(kw)
    return make_config(name, **base)


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_fixture_is_backdoored(tiny):
    model, _, (xh, yh) = tiny
    assert float((predict(model, xh) == yh).float().mean()) >= 0.9
    assert patch_asr(model, xh, yh) >= 0.9


# --- contract, over every registered defense ------------------------------------------------

@pytest.mark.parametrize("name", list_defenses())
def test_defense_contract(name, tiny):
    """RepairResult; pivot untouched; moved after real steps; deterministic; monitor recorded."""
    _, (xt, yt), (xh, yh) = tiny
    pivot = fresh(tiny)
    before = {k: v.clone() for k, v in pivot.state_dict().items()}
    cfg = _cfg(name, max_cda_drop=1.0, seed=3)  # every checkpoint within budget
    mon = lambda m: {"asr": patch_asr(m, xh, yh)}  # noqa: E731
    r1 = get_defense(name).run(pivot, TrustedSplit.of(xt, yt, xh, yh), cfg, monitor=mon)
    r2 = run_by_name(name, pivot, TrustedSplit.of(xt, yt, xh, yh), cfg, monitor=mon)
    assert isinstance(r1, RepairResult)
    assert all(torch.equal(before[k], v) for k, v in pivot.state_dict().items())
    assert r1.moved and r1.param_distance > 0 and r1.best_step == 6
    assert [c.step for c in r1.trajectory] == [0, 3, 6]
    assert all("asr" in c.extra for c in r1.trajectory)
    assert r1.trajectory[0].extra["asr"] == pytest.approx(patch_asr(pivot, xh, yh))
    assert r1.best_cda == pytest.approx(float((predict(r1.model, xh) == yh).float().mean()))
    assert r1.cda_drop_se == pytest.approx(paired_drop_se(predict(pivot, xh), predict(r1.model, xh), yh))
    assert any("standard error" in n for n in r1.notes)
    assert _same_state(r1.model, r2.model)
    assert [c.losses for c in r1.trajectory] == [c.losses for c in r2.trajectory]


@pytest.mark.parametrize("name", list_defenses())
def test_defense_respects_the_budget(name, tiny):
    """A learning rate that wrecks accuracy: nothing outside Delta is kept, rollback = pivot."""
    _, (xt, yt), (xh, yh) = tiny
    pivot = fresh(tiny)
    cfg = _cfg(name, lr=3.0, max_cda_drop=0.02, patience=1)
    r = run_by_name(name, pivot, TrustedSplit.of(xt, yt, xh, yh), cfg)
    assert r.best_cda >= r.pivot_cda - cfg.max_cda_drop
    kept = [c for c in r.trajectory if c.step == r.best_step]
    assert kept and kept[-1].cda == pytest.approx(r.best_cda)
    assert any(c.cda < r.pivot_cda - cfg.max_cda_drop for c in r.trajectory)  # it did go out
    if not r.moved:
        assert _same_state(r.model, pivot)
        assert any("NOT repaired" in n for n in r.notes)


def test_registry():
    assert list_defenses() == ["pivotal", "fine_pruning", "nad", "weight_decay", "nc_repair"]
    cfg_cls, fn = get_defense("Fine-Pruning")  # case and -/_ do not matter
    assert cfg_cls is get_defense("fine_pruning").config and fn.__name__ == "fine_pruning"
    assert canonical_name("NC-Repair") == "nc_repair"
    assert get_defense("nc_repair").summary.startswith("Neural Cleanse repair")
    with pytest.raises(InputError) as e:
        get_defense("nope")
    assert e.value.hint == "known: pivotal, fine_pruning, nad, weight_decay, nc_repair"
    for alias in ("pt", "fp", "wd", "nc", "pivotal_tuning"):  # one name per defense
        with pytest.raises(InputError):
            get_defense(alias)
    with pytest.raises(InputError):
        make_config("nad", bogus=1)
    # Table 5 values: method knobs by default, paper-scale steps on CUDA
    assert make_config("fine_pruning").prune_rate == 0.96
    assert make_config("weight_decay").weight_decay == 0.01
    nad = make_config("nad", device="cuda", lambda_at=None)
    assert (nad.steps, nad.teacher_steps, nad.batch_size, nad.power, nad.lambda_at) == \
        (2000, 1000, 128, 2.0, 1000.0)
    assert make_config("nc_repair", device="cuda").steps == 1000
    assert make_config("nc_repair").inversion.steps == 100


@pytest.mark.parametrize("entry", list(DEFENSES), ids=lambda e: e.name)
def test_every_registered_defense_has_a_finetune_config(entry):
    """Through the registry itself: each entry's config is a FinetuneConfig whose CPU defaults
    are the class defaults and whose CUDA scale is larger; ``None`` overrides are ignored."""
    cls = entry.meta["config"]
    assert issubclass(cls, FinetuneConfig)
    assert get_defense(entry.name) == (cls, entry.obj) and canonical_name(entry.name) == entry.name
    assert entry.summary
    cpu, cuda = cls.for_device(torch.device("cpu")), cls.for_device(torch.device("cuda"))
    assert cpu == cls()
    assert cuda.steps > cpu.steps and cuda.batch_size == 128 and cuda.eval_every == 50
    over = cls.for_device(torch.device("cpu"), steps=None, seed=4)
    assert (over.steps, over.seed) == (cpu.steps, 4)


# --- Fine-Pruning ---------------------------------------------------------------------------

def test_fine_pruning_zeroes_lowest_channels_and_keeps_them_zero(tiny):
    _, (xt, yt), (xh, yh) = tiny
    pivot = fresh(tiny)
    target = find_prune_target(pivot)
    assert target.conv_path == "c2" and target.bn_path is None and target.channels == 16
    cfg = _cfg("fine_pruning", prune_rate=0.5, max_cda_drop=1.0, steps=10, eval_every=5,
               sampled_batches=2)
    r = run_by_name("fine_pruning", pivot, TrustedSplit.of(xt, yt, xh, yh), cfg)
    assert r.moved and r.best_step == 10
    idx = torch.tensor(r.info["pruned_channels"])
    assert len(idx) == round(0.5 * 16) == 8
    conv = target.conv(r.model)
    zero_rows = (conv.weight.flatten(1).abs().sum(1) == 0) & (conv.bias == 0)
    assert torch.equal(torch.nonzero(zero_rows).flatten(), idx)  # exactly these, still zero
    assert not torch.equal(conv.weight, target.conv(pivot).weight)  # the rest was fine-tuned
    # the pruned ones are the lowest mean |activation| channels on the probe images
    g = torch.Generator().manual_seed(cfg.seed)
    probe = xt[torch.randperm(len(yt), generator=g)[:64]]
    act = channel_activations(pivot, target, probe)
    assert set(idx.tolist()) == set(torch.argsort(act)[:8].tolist())


def test_prune_count():
    assert prune_count(0.96, 64) == 61
    assert prune_count(0.5, 16) == 8
    assert prune_count(0.99, 8) == 7  # never the whole layer


def test_fine_pruning_target_follows_the_main_path_and_its_bn():
    torch.manual_seed(0)
    model = SplitClassifier(TinyResNet().eval(), SPEC)
    t = find_prune_target(model)
    assert (t.conv_path, t.bn_path, t.channels) == ("conv2", "bn2", 16)
    bn = model.feature_net.get_submodule("bn2")
    bn.running_mean.uniform_(-1, 1)  # a channel with conv output 0 would otherwise be non-zero
    idx = torch.tensor([1, 5])
    zero_channels(model, t, idx)
    out = {}
    h = t.output_module(model).register_forward_hook(lambda m, i, o: out.setdefault("a", o))
    with torch.no_grad():
        model(torch.rand(3, 3, 8, 8))
    h.remove()
    assert float(out["a"][:, idx].abs().max()) == 0.0
    assert float(out["a"][:, [0, 2]].abs().max()) > 0.0


def test_fine_pruning_with_batchnorm_model(tiny):
    _, (xt, yt), (xh, yh) = tiny
    torch.manual_seed(1)
    net = TinyCNN(bn=True)
    net.bn.running_var.fill_(2.0)
    model = SplitClassifier(net.eval(), SPEC)
    cfg = _cfg("fine_pruning", prune_rate=0.25, max_cda_drop=1.0)
    r = run_by_name("fine_pruning", model, TrustedSplit.of(xt, yt, xh, yh), cfg)
    idx = r.info["pruned_channels"]
    assert r.info["prune_bn"] == "bn" and len(idx) == 4
    bn = r.model.feature_net.get_submodule("bn")
    assert not bn.weight.detach()[idx].any() and not bn.bias.detach()[idx].any()


# --- NAD ------------------------------------------------------------------------------------

def test_attention_map_hand_checked():
    a = torch.tensor([[[[1.0, -1.0], [0.0, 2.0]],
                       [[1.0, 1.0], [2.0, 0.0]]]])  # [1, 2, 2, 2]
    # mean_c |a|^2 = [[1, 1], [2, 2]] -> flattened, divided by its L2 norm sqrt(10)
    expect = torch.tensor([[1.0, 1.0, 2.0, 2.0]]) / 10 ** 0.5
    am = attention_map(a, p=2)
    assert am.shape == (1, 4)
    assert torch.allclose(am, expect)
    assert torch.allclose(am.norm(dim=1), torch.ones(1))
    # p = 4: mean_c |a|^4 = [[1, 1], [8, 8]]
    assert torch.allclose(attention_map(a, p=4), torch.tensor([[1.0, 1.0, 8.0, 8.0]]) / 130 ** 0.5)
    # scale invariance (the normalisation) and zero loss against itself
    assert torch.allclose(attention_map(3 * a), am)
    assert float(attention_loss([a], [a], 2)) == 0.0


def test_nad_taps_the_stage_outputs(tiny):
    model = fresh(tiny)
    x = tiny[1][0][:5]
    names = stage_outputs(model, x)
    assert len(names) == 2  # relu at 8x8 and relu at 4x4; the 1x1 pooled map is excluded
    tap = tap_features(model, names)
    feats, acts = tap(x)
    net = model.net
    with torch.no_grad():
        a1 = F.relu(net.c1(x))
        a2 = F.relu(net.c2(F.max_pool2d(a1, 2)))
    assert torch.allclose(feats, model.features(x))
    assert [tuple(a.shape) for a in acts] == [(5, 8, 8, 8), (5, 16, 4, 4)]
    assert torch.allclose(acts[0], a1) and torch.allclose(acts[1], a2)
    # shared parameters: a gradient through the tap reaches the model's own weights
    acts[1].sum().backward()
    assert net.c2.weight.grad is not None and float(net.c2.weight.grad.abs().sum()) > 0
    net.zero_grad(set_to_none=True)


def test_nad_records_teacher_and_layers(tiny):
    _, (xt, yt), (xh, yh) = tiny
    r = run_by_name("nad", fresh(tiny), TrustedSplit.of(xt, yt, xh, yh), _cfg("nad", max_cda_drop=1.0))
    assert r.info["teacher_moved"] and r.info["teacher_step"] == 4
    assert len(r.info["attention_layers"]) == 2
    assert all("at" in c.losses for c in r.trajectory[1:])


# --- Neural Cleanse repair ------------------------------------------------------------------

def _detection(true_patch: bool, flagged: list[int]) -> DetectionResult:
    g = torch.Generator().manual_seed(7)
    mask = torch.rand(K, 1, 8, 8, generator=g) * 0.2
    pattern = torch.rand(K, 3, 8, 8, generator=g)
    if true_patch:  # class 0's reversed trigger is the real 2x2 white patch
        mask[0] = 0
        mask[0, :, :2, :2] = 1
        pattern[0] = 1
    trig = TriggerSet(list(range(K)), "mask", mask=mask, pattern=pattern, final_cost=[0.0] * K)
    l1 = trig.mask_l1()
    per = [ClassScore(c, 3.0 - c, 1.0, None, l1[c], 3.0 - c) for c in range(K)]
    return DetectionResult("neural_cleanse", 3.0, per, flagged, trig)


def test_nc_class_choice():
    c, why = choose_class(_detection(False, [2, 1]))
    assert c == 1 and "flagged" in why  # highest anomaly index among the flagged
    det = _detection(True, [])
    c, why = choose_class(det)
    assert c == 0 and "no class flagged" in why  # smallest mask norm


def test_nc_repair_unlearns_the_reversed_trigger(tiny):
    """With the real patch as the reversed trigger its ASR falls; without stamping it does not.

    (Unlearning first costs clean accuracy - the quickest way to stop predicting class 0 on
    stamped images is to predict class 0 less - and recovers over the next steps, hence the
    10-point budget and the patience on this 4-class toy.)
    """
    _, (xt, yt), (xh, yh) = tiny
    pivot = fresh(tiny)
    asr0 = patch_asr(pivot, xh, yh)
    cfg = NCRepairConfig(steps=40, eval_every=10, batch_size=32, lr=1e-3, max_cda_drop=0.1,
                         patience=10, augment=False)
    mon = lambda m: {"asr": patch_asr(m, xh, yh)}  # noqa: E731
    r = nc_repair(pivot, TrustedSplit.of(xt, yt, xh, yh), cfg, detection=_detection(True, [0]), monitor=mon)
    assert r.info["nc_class"] == 0 and r.moved
    assert r.trajectory[0].extra["reversed_asr"] == pytest.approx(asr0)  # the same trigger
    asr1 = patch_asr(r.model, xh, yh)
    assert asr0 >= 0.9 and asr1 <= 0.3, (asr0, asr1)
    assert r.best_cda >= r.pivot_cda - 0.1
    control = nc_repair(pivot, TrustedSplit.of(xt, yt, xh, yh), dataclasses.replace(cfg, stamp_frac=0.0),
                        detection=_detection(True, [0]))
    assert patch_asr(control.model, xh, yh) >= 0.9  # plain fine-tuning keeps the backdoor


def test_nc_repair_runs_its_own_detection(tiny):
    _, (xt, yt), (xh, yh) = tiny
    cfg = _cfg("nc_repair", max_cda_drop=1.0)
    r = nc_repair(fresh(tiny), TrustedSplit.of(xt, yt, xh, yh), cfg)
    assert r.info["nc_class"] in range(K)
    assert any("reversed 4 triggers" in n for n in r.notes)
    assert r.info["trigger"].classes == [r.info["nc_class"]]
    # the configured seed, not the detector's own, drives the inversion
    r2 = nc_repair(fresh(tiny), TrustedSplit.of(xt, yt, xh, yh), dataclasses.replace(cfg, seed=1))
    assert not torch.equal(r.info["trigger"].mask, r2.info["trigger"].mask)
