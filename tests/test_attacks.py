"""Attack generators and the poisoned-model trainer, on tiny random tensors (whole file: seconds)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scanner.attacks import PoisonedSet, attack_class, get_attack, list_attacks
from scanner.attacks.base import ATTACKS
from scanner.attacks import functional as AF
from scanner.attacks.patterns import load_patch, scatter_triggers
from scanner.attacks.train import (_Step, attack_success_rate, evaluate, random_crop_flip,
                                   train_model)
from scanner.errors import InputError


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread for this file's tiny tensors, restored after it (not for the whole suite)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


N, C, H, W, K = 40, 3, 32, 32, 4
EXPECTED = {"badnets", "cbadnets", "adaptive_patch", "adaptive_blend", "adv_clean_label",
            "refool", "wanet", "tsb", "pcb", "grid_patch", "additive_square", "blend", "l0_spread",
            "l2_spread", "all_to_all"}
CLEAN_LABEL = {"cbadnets", "adv_clean_label", "refool", "wanet"}


def tiny_net(num_classes: int = K) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(C, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    x = torch.rand(N, C, H, W, generator=g)
    y = torch.arange(N) % K  # 10 images per class
    return x, y


def make(name: str, **over):
    params = {"m": 4, **over}
    if name == "adv_clean_label" and "surrogate" not in params:
        params["surrogate"] = tiny_net()
    if name == "all_to_all":
        params.setdefault("num_classes", K)
    return get_attack(name, **params)


def test_registry_lists_every_attack():
    assert list_attacks() == sorted(EXPECTED)
    for name in EXPECTED:
        assert attack_class(name).clean_label == (name in CLEAN_LABEL)
    assert attack_class("Adaptive-Patch") is attack_class("adaptive_patch")
    with pytest.raises(InputError) as e:
        attack_class("nope")
    assert "badnets" in e.value.hint and "wanet" in e.value.hint


@pytest.mark.parametrize("entry", list(ATTACKS), ids=lambda e: e.name)
def test_every_registered_attack_builds_with_defaults_and_stamps(entry, data):
    """Through the registry itself: the registered name is the class's ``name``, the class builds
    with its defaults, and its inference trigger changes a small batch without changing its
    shape, dtype or range."""
    cls = entry.obj
    assert cls.name == entry.name and attack_class(entry.name) is cls and entry.summary
    assert isinstance(cls().config, cls.Config)
    # the one trigger computed on the attacker's model (poison() would train one first)
    attack = cls(surrogate=tiny_net()) if entry.name == "adv_clean_label" else cls()
    x = data[0][:3]
    out = attack.apply(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert bool((out != x).flatten(1).any(1).all())


@pytest.mark.parametrize("boost", [1, 3])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_attack_contract(name, boost, data):
    x, y = data
    m = 4
    attack = make(name, boost=boost)
    ps = attack.poison(x, y)
    cfg = attack.config

    # shape, dtype, range; only boost copies are added
    assert ps.x.shape == (N + (boost - 1) * m, C, H, W)
    assert ps.x.dtype == x.dtype and ps.y.dtype == torch.int64
    assert float(ps.x.min()) >= 0.0 and float(ps.x.max()) <= 1.0
    assert torch.equal(ps.source[:N], torch.arange(N))
    assert torch.equal(ps.true_y, y[ps.source])

    # exactly m distinct samples poisoned, each repeated `boost` times
    assert len(ps.poisoned) == m * boost == len(set(ps.poisoned.tolist()))
    src = ps.source[ps.poisoned]
    assert len(set(src.tolist())) == m
    assert torch.equal(torch.bincount(src, minlength=N).max(), torch.tensor(boost))
    assert not (set(ps.noise.tolist()) & set(ps.poisoned.tolist()))

    # labels: clean-label never changes one; poison-label changes only poisoned rows, to their
    # target (attack.target_of: config.target, or label-dependent for all-to-all)
    changed = torch.nonzero(ps.y != ps.true_y).flatten()
    if attack.clean_label:
        assert len(changed) == 0
        assert bool((ps.true_y[ps.poisoned] == attack.target_of(ps.true_y[ps.poisoned])).all())
        assert torch.equal(torch.bincount(ps.y[:N], minlength=K), torch.bincount(y, minlength=K))
    else:
        assert set(changed.tolist()) <= set(ps.poisoned.tolist())
        assert bool((ps.y[changed] == attack.target_of(ps.true_y[changed])).all())
        assert bool((ps.true_y[ps.poisoned] != attack.target_of(ps.true_y[ps.poisoned])).all())
        assert len(changed) == (m - round(cfg.conservatism * m)) * boost

    # poisoned rows are modified; every row outside poisoned/noise is bit-identical
    orig = x[ps.source]
    touched = torch.zeros(len(ps), dtype=torch.bool)
    touched[ps.poisoned] = True
    touched[ps.noise] = True
    assert torch.equal(ps.x[~touched], orig[~touched])
    assert bool((ps.x[ps.poisoned] != orig[ps.poisoned]).flatten(1).any(1).all())
    assert bool((ps.y[ps.noise] == ps.true_y[ps.noise]).all())

    # what the trainer sees without augmentation is what was published (noise is redrawn)
    xb, yb = ps.batch(torch.arange(len(ps)))
    stable = torch.ones(len(ps), dtype=torch.bool)
    stable[ps.noise] = False
    assert torch.equal(xb[stable], ps.x[stable]) and torch.equal(yb, ps.y)

    # seeding: the same seed reproduces, another seed differs
    again = make(name, boost=boost).poison(x, y)
    assert torch.equal(again.x, ps.x) and torch.equal(again.y, ps.y)
    assert torch.equal(again.poisoned, ps.poisoned) and torch.equal(again.noise, ps.noise)
    other = make(name, boost=boost, seed=1).poison(x, y)
    assert not torch.equal(other.poisoned, ps.poisoned)

    # the inference trigger changes every image, keeps shape/dtype/range, and is deterministic
    xt = attack.apply(x)
    assert xt.shape == x.shape and xt.dtype == x.dtype
    assert float(xt.min()) >= 0.0 and float(xt.max()) <= 1.0
    assert bool((xt != x).flatten(1).any(1).all())
    assert torch.equal(xt, attack.apply(x))
    assert torch.equal(x, data[0])  # inputs are never mutated


def test_boost_copies_share_the_original_label_and_image(data):
    x, y = data
    ps = make("adaptive_patch", boost=3, m=4).poison(x, y)
    for i in ps.poisoned[4:].tolist():
        j = int(ps.source[i])
        assert torch.equal(ps.x[i], ps.x[j]) and int(ps.y[i]) == int(ps.y[j])


# --- configuration errors -------------------------------------------------------------------

def test_bad_input_is_an_input_error(data):
    x, y = data
    with pytest.raises(InputError):
        get_attack("nope")
    with pytest.raises(InputError):
        get_attack("badnets", colour="red")
    with pytest.raises(InputError):
        get_attack("badnets", m=0)
    with pytest.raises(InputError):
        get_attack("badnets", boost=0)
    with pytest.raises(InputError):
        get_attack("cbadnets", conservatism=0.5)
    with pytest.raises(InputError):
        get_attack("cbadnets", m=11).poison(x, y)  # only 10 target-class images
    with pytest.raises(InputError):
        get_attack("badnets", m=4).poison(x * 255, y)
    with pytest.raises(InputError):
        get_attack("badnets", m=4).poison(x, y.float())
    with pytest.raises(InputError):
        get_attack("badnets", m=4).apply(x[0])


# --- pure trigger functions -----------------------------------------------------------------

def test_stamp_patch_positions_and_mask():
    x = torch.zeros(2, 1, 4, 4)
    patch = torch.ones(1, 2, 2)
    out = AF.stamp_patch(x, patch, torch.tensor([0, 2]), torch.tensor([1, 0]))
    assert torch.equal(out[0, 0], torch.tensor([[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0.]]))
    assert torch.equal(out[1, 0], torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0.]]))
    assert float(x.abs().sum()) == 0  # input untouched
    masked = AF.stamp_patch(x, patch, 0, 0, mask=torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert torch.equal(masked[0, 0, :2, :2], torch.eye(2))
    with pytest.raises(ValueError):
        AF.stamp_patch(x, patch, 3, 0)


def test_blend_and_grid_mask():
    x, p = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    assert torch.equal(AF.blend(x, p, 0.0), x)
    assert torch.allclose(AF.blend(x, p, 0.3), torch.full_like(x, 0.3))
    assert torch.equal(AF.blend(x, p, 1.0, mask=torch.tensor([[1.0, 0.0], [0.0, 0.0]])),
                       torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]))
    keep = torch.tensor([[[True, False], [False, True]]])
    m = AF.grid_mask(keep, 4, 4)
    assert m.shape == (1, 1, 4, 4)
    assert torch.equal(m[0, 0], torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1.]]))
    # a 3 px patch under a 4x4 grid: pixel i lies in cell floor(4 i / 3) = 0, 1, 2
    keep4 = torch.zeros(1, 4, 4, dtype=torch.bool)
    keep4[0, 3, 3] = True  # a cell that covers no pixel
    assert float(AF.grid_mask(keep4, 3, 3).sum()) == 0
    grids = AF.random_keep_grid(500, 4, 0.05, torch.Generator().manual_seed(0), 3, 3)
    assert bool((AF.grid_mask(grids, 3, 3).flatten(1).sum(1) > 0).all())


def test_badnets_patch_is_the_picture_at_the_top_left(data):
    x, _ = data
    attack = get_attack("badnets")
    xt = attack.apply(x)
    diff = (xt != x).any(1)  # N x H x W
    assert bool(diff[:, :3, :3].all()) and not bool(diff[:, 3:, :].any()) and not bool(diff[:, :, 3:].any())
    assert torch.equal(xt[:, :, :3, :3], load_patch(3, 3, 3).expand(N, 3, 3, 3))
    big = attack.apply(torch.rand(2, 3, 64, 64))  # the patch scales with the image: floor(3/32 * 64)
    assert torch.equal(big[:, :, :6, :6], load_patch(6, 6, 3).expand(2, 3, 6, 6))


def test_adaptive_conservatism_and_occlusion():
    x = torch.rand(80, C, H, W, generator=torch.Generator().manual_seed(1))
    y = torch.arange(80) % K
    for name in ("adaptive_patch", "adaptive_blend"):
        attack = get_attack(name, m=20)
        assert attack.config.conservatism == 0.5 and attack.config.grid == 4
        ps = attack.poison(x, y)
        relabelled = ps.y[ps.poisoned] == 0
        assert int(relabelled.sum()) == 10  # half payload, half regularisation
        assert bool((ps.y[ps.poisoned][~relabelled] == ps.true_y[ps.poisoned][~relabelled]).all())
        # poisoned images carry an occluded trigger: never more than the full trigger, usually less
        full = attack.apply(x[ps.source[ps.poisoned]])
        orig = x[ps.source[ps.poisoned]]
        partial = (ps.x[ps.poisoned] != orig).flatten(1).sum(1)
        complete = (full != orig).flatten(1).sum(1)
        assert bool((partial <= complete).all()) and bool((partial < complete).any())


def test_tsb_trains_one_trigger_and_stamps_all_k_distinct_at_inference():
    attack = get_attack("tsb", m=4)
    trig = attack.triggers(3, W)
    assert trig.shape == (8, 3, 3, 3)
    flat = trig.flatten(1)
    assert bool((torch.cdist(flat, flat) + torch.eye(8) * 99 > 0.5).all())  # pairwise distinct
    x = torch.full((5, 3, H, W), 0.5)
    xt = attack.apply(x)
    for img in xt:
        found = []
        for r in range(0, H - 2, 3):
            for c in range(0, W - 2, 3):
                block = img[:, r:r + 3, c:c + 3]
                if bool((block != 0.5).any()):
                    hits = [j for j in range(8) if torch.equal(block, trig[j])]
                    assert len(hits) == 1
                    found += hits
        assert sorted(found) == list(range(8))
    # training: exactly one trigger's worth of pixels changed per poisoned image
    xs = torch.full((40, 3, H, W), 0.5)
    ps = attack.poison(xs, torch.arange(40) % K)
    changed = (ps.x[ps.poisoned] != 0.5).any(1).flatten(1).sum(1)
    assert bool((changed <= 9).all()) and bool((changed > 0).all())


def test_wanet_warp_is_identity_at_zero_strength():
    g = torch.Generator().manual_seed(0)
    field = AF.warp_field(4, 8, 8, g)
    assert torch.allclose(AF.warp_grid(field, 0.0), AF.identity_grid(8, 8))
    x = torch.rand(2, 3, 8, 8, generator=g)
    assert torch.allclose(AF.warp(x, AF.warp_grid(field, 0.0)), x, atol=1e-6)
    assert not torch.allclose(AF.warp(x, AF.warp_grid(field, 0.5)), x, atol=1e-3)
    img = torch.rand(1, 3, H, W, generator=g)
    assert torch.allclose(get_attack("wanet", s=0.0).apply(img), img, atol=1e-5)  # linspace rounding


def test_wanet_noise_rows_are_redrawn_payload_rows_are_not(data):
    x, y = data
    attack = get_attack("wanet", m=4, cross_ratio=2.0)
    ps = attack.poison(x, y)
    assert len(ps.noise) == 8
    idx = torch.cat([ps.poisoned, ps.noise])
    g = torch.Generator().manual_seed(0)
    a, _ = ps.batch(idx, None, g)
    b, _ = ps.batch(idx, None, g)
    assert torch.equal(a[:4], b[:4]) and torch.equal(a[:4], ps.x[ps.poisoned])
    assert not torch.equal(a[4:], b[4:])


def test_refool_functions():
    r = torch.arange(16.0).view(1, 1, 4, 4) / 16
    g = AF.ghost(r, 1, 0, ghost_alpha=0.5)
    assert torch.allclose(g[0, 0, 1:], 0.5 * r[0, 0, 1:] + 0.5 * r[0, 0, :-1])
    assert torch.allclose(AF.ghost(r, 0, 0), r)
    x = torch.rand(2, 3, 5, 5)
    assert torch.allclose(AF.reflect_blend(x, torch.ones_like(x), 0.0), x, atol=1e-6)
    out = AF.reflect_blend(x, torch.ones_like(x), 0.5)
    assert bool((out >= x - 1e-6).all()) and float(out.max()) <= 1.0
    blurred = AF.gaussian_blur(x, 1.0)
    assert blurred.shape == x.shape and float(blurred.std()) < float(x.std())


def test_pgd_moves_towards_the_target_inside_the_ball():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(C * 8 * 8, K)).eval()
    x = torch.rand(6, C, 8, 8)
    eps = 8 / 255
    adv = AF.pgd_targeted(model, x, 2, eps, 2 / 255, 4, torch.Generator().manual_seed(0))
    assert float((adv - x).abs().max()) <= eps + 1e-6 and float(adv.min()) >= 0 and float(adv.max()) <= 1
    ce = nn.functional.cross_entropy
    target = torch.full((6,), 2)
    with torch.no_grad():
        assert float(ce(model(adv), target)) < float(ce(model(x), target))


def test_adv_clean_label_trains_its_own_surrogate_when_none_given(data):
    x, y = data
    attack = get_attack("adv_clean_label", m=4, surrogate_epochs=1)
    with pytest.raises(InputError):
        attack.apply(x)  # no surrogate yet
    ps = attack.poison(x, y)
    assert attack.surrogate is not None
    delta = (ps.x[ps.poisoned] - x[ps.poisoned]).abs().max()
    assert 0 < float(delta) <= 8 / 255 + 1e-6
    assert float((attack.apply(x) - x).abs().max()) <= 8 / 255 + 1e-6


def test_pcb_poisoned_steps_touch_only_a_fraction_p_of_parameters(data):
    x, y = data
    attack = get_attack("pcb", m=4, p=0.1)
    ps = attack.poison(x, y)
    assert not (set(ps.regular.tolist()) & set(ps.poisoned.tolist()))
    assert len(ps.regular) == N - 4
    model = tiny_net().train()
    hook = attack.training_hook(model, ps, lr=0.1, momentum=0.9)
    before = [q.detach().clone() for q in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    g = torch.Generator().manual_seed(0)
    for step in range(3):
        hook.after_step(_Step(model, step, 0.1, 8, g, lambda idx: ps.batch(idx, None, g)))
    moved = torch.cat([(q.detach() != b).flatten() for q, b in zip(model.parameters(), before)])
    allowed = torch.cat([m.flatten().bool() for m in hook.masks])
    total = moved.numel()
    assert int(allowed.sum()) == round(0.1 * total)
    assert int(moved.sum()) > 0
    assert not bool((moved & ~allowed).any())  # nothing outside the sampled parameters moved
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))  # BN stats restored


# --- trainer --------------------------------------------------------------------------------

def test_random_crop_flip_is_a_seeded_shift_and_mirror():
    x = torch.rand(3, 1, 6, 6)
    assert torch.equal(random_crop_flip(x, None, pad=0, flip=False), x)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=2, flip=True)
    again = random_crop_flip(x, torch.Generator().manual_seed(0), pad=2, flip=True)
    assert out.shape == x.shape and torch.equal(out, again)


def test_trigger_is_stamped_after_augmentation(data):
    x, y = data
    attack = get_attack("badnets", m=8)
    ps = attack.poison(x, y)
    g = torch.Generator().manual_seed(0)
    idx = torch.arange(len(ps))
    xb, _ = ps.batch(idx, random_crop_flip, g)
    patch = load_patch(3, 3, 3)
    assert bool((xb[ps.poisoned][:, :, :3, :3] == patch).all())  # intact patch, right place
    clean = torch.ones(len(ps), dtype=torch.bool)
    clean[ps.poisoned] = False
    assert not torch.equal(xb[clean], ps.x[clean])  # the rest really was augmented
    assert not bool((xb[clean][:, :, :3, :3] == patch).flatten(1).all(1).any())


def test_train_model_is_deterministic_and_runs_training_hooks(data):
    x, y = data
    kw = dict(epochs=1, batch_size=16, lr=0.05, device="cpu", seed=3, num_classes=K)
    m1, h1 = train_model("resnet8", x, y, attack=get_attack("pcb", m=4), **kw)
    m2, _ = train_model("resnet8", x, y, attack=get_attack("pcb", m=4), **kw)
    m3, _ = train_model("resnet8", x, y, attack=get_attack("pcb", m=4), **{**kw, "seed": 4})
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)
    assert not m1.training
    assert len(h1.epochs) == 1 and "hook_loss" in h1.epochs[0] and h1.epochs[0]["hook_loss"] > 0
    with pytest.raises(InputError):
        train_model("resnet8", x, y, poisoned=h1.poisoned, epochs=1)


class _Constant(nn.Module):
    def __init__(self, cls: int) -> None:
        super().__init__()
        self.cls = cls
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.zeros(len(x), K) + self.w
        out[:, self.cls] = 1.0
        return out


def test_metrics_follow_the_paper_definitions(data):
    x, y = data
    attack = get_attack("badnets", target=0)
    assert evaluate(_Constant(0), x, y) == pytest.approx(0.25)
    assert attack_success_rate(_Constant(0), attack, x, y) == 1.0  # target-class images excluded
    assert attack_success_rate(_Constant(1), attack, x, y) == 0.0
    with pytest.raises(InputError):
        attack_success_rate(_Constant(0), attack, x[y == 0], y[y == 0])


def test_clean_poisoned_set_is_the_identity(data):
    x, y = data
    ps = PoisonedSet.clean(x, y)
    xb, yb = ps.batch(torch.arange(N))
    assert torch.equal(xb, x) and torch.equal(yb, y) and len(ps.poisoned) == 0


def test_scatter_triggers_are_deterministic_per_seed():
    a = scatter_triggers(8, 3, 3, torch.Generator().manual_seed(0))
    b = scatter_triggers(8, 3, 3, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and float(a.min()) >= 0 and float(a.max()) <= 1
