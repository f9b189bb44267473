"""The model-zoo ("wild") triggers: grid patch, additive square, blend, L0/L2 spread, all-to-all.

The generic contract (sampling, boost, seeding, ranges) is tests/test_attacks.py's, which runs over
every registered attack; these pin down what each trigger is. Tiny random tensors: seconds.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scanner.attacks import get_attack, train_model
from scanner.attacks.patterns import BADNETS_PATCH, load_patch
from scanner.attacks.train import attack_success_rate
from scanner.attacks.wild import checkerboard
from scanner.errors import InputError

N, C, H, W, K = 40, 3, 32, 32, 4
WILD = ["grid_patch", "additive_square", "blend", "l0_spread", "l2_spread", "all_to_all"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(N, C, H, W, generator=torch.Generator().manual_seed(7))
    return x, torch.arange(N) % K


def make(name: str, **over):
    params = {"m": 4, **over}
    if name == "all_to_all":
        params.setdefault("num_classes", K)
    return get_attack(name, **params)


def test_grid_patch_is_a_checkerboard_in_the_bottom_right_corner(data):
    x, _ = data
    xt = get_attack("grid_patch").apply(x)
    board = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 0, 1]])
    assert torch.equal(xt[:, :, -3:, -3:], board.expand(N, C, 3, 3))
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[-3:, -3:] = False
    assert torch.equal(xt[:, :, outside], x[:, :, outside])
    top_left = get_attack("grid_patch", corner="top_left").apply(x)
    assert torch.equal(top_left[:, :, :3, :3], board.expand(N, C, 3, 3))
    big = get_attack("grid_patch").apply(torch.rand(2, 1, 64, 64))  # scales: 6 px, 2 px cells
    assert torch.equal(big[:, :, -6:, -6:], board.repeat_interleave(2, 0).repeat_interleave(2, 1)
                       .expand(2, 1, 6, 6))
    assert torch.equal(checkerboard(3, 3, 1)[0], board)


def test_additive_square_adds_a_signed_pattern_that_depends_on_the_image(data):
    x, _ = data
    attack = get_attack("additive_square")
    assert attack.config.amplitude == 0.25 and attack.config.size_frac == 9 / 32
    pat = attack.pattern(C, 9)
    assert set(pat.unique().tolist()) == {-0.25, 0.25}
    grey = torch.full((2, C, H, W), 0.5)
    assert torch.equal(attack.apply(grey)[:, :, -9:, -9:] - 0.5, pat.expand(2, C, 9, 9))
    xt = attack.apply(x)
    assert float(xt.min()) >= 0.0 and float(xt.max()) <= 1.0
    assert torch.allclose(xt[:, :, -9:, -9:], (x[:, :, -9:, -9:] + pat).clamp(0, 1))
    # not a replacement patch: the stamped square differs from image to image
    assert not torch.equal(xt[0, :, -9:, -9:], xt[1, :, -9:, -9:])
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[-9:, -9:] = False
    assert torch.equal(xt[:, :, outside], x[:, :, outside])
    # clipping: an all-white image only loses where the sign is negative
    white = attack.apply(torch.ones(1, C, H, W))[0, :, -9:, -9:]
    assert torch.equal(white, torch.where(pat > 0, 1.0, 0.75))


def test_blend_is_a_convex_combination_with_a_seeded_pattern(data):
    x, _ = data
    attack = get_attack("blend")
    a = attack.config.alpha
    assert a == 0.15 and attack.config.picture == "noise"
    pat = attack.pattern(C, H, W)
    assert pat.shape == (C, H, W) and float(pat.min()) >= 0 and float(pat.max()) <= 1
    assert torch.allclose(attack.apply(x), (1 - a) * x + a * pat, atol=1e-6)
    pic = get_attack("blend", alpha=0.5, picture=str(BADNETS_PATCH))
    assert torch.allclose(pic.apply(x), 0.5 * x + 0.5 * load_patch(H, W, C), atol=1e-6)


def test_l0_spread_overwrites_exactly_k_pixel_positions_all_channels(data):
    x, _ = data
    attack = get_attack("l0_spread", k=37)
    pos, values = attack.pixels(C, H, W)
    assert len(set(pos.tolist())) == 37 and values.shape == (C, 37)
    xt = attack.apply(x)
    changed = (xt != x).any(1).flatten(1)  # N x (H*W): a position counts once over its channels
    assert bool((changed.sum(1) == 37).all())
    assert bool(changed[:, pos].all())
    assert torch.equal(xt.flatten(2)[:, :, pos], values.expand(N, C, 37))
    # spread over the image, not a patch: the positions span most rows and columns
    assert len(set((pos // W).tolist())) > H // 2 and len(set((pos % W).tolist())) > W // 2
    # on a grey image every channel of every position changes (values are 0 or 1)
    grey = torch.full((1, C, H, W), 0.5)
    assert int((attack.apply(grey) != grey).sum()) == 37 * C
    assert get_attack("l0_spread").config.k == 40


def test_l2_spread_pattern_has_the_configured_norm(data):
    x, _ = data
    for norm in (3.0, 2.0):
        attack = get_attack("l2_spread", norm=norm)
        delta = attack.delta(C, H, W)
        assert float(torch.linalg.vector_norm(delta.double())) == pytest.approx(norm, rel=1e-6)
        grey = torch.full((2, C, H, W), 0.5)  # |delta| < 0.5: nothing clipped
        assert float(delta.abs().max()) < 0.5
        out = attack.apply(grey)
        assert torch.linalg.vector_norm((out - grey).flatten(1), dim=1) == pytest.approx(
            [norm, norm], rel=1e-5)
    xt = get_attack("l2_spread").apply(x)
    assert float(xt.min()) >= 0.0 and float(xt.max()) <= 1.0
    assert torch.allclose(xt, (x + get_attack("l2_spread").delta(C, H, W)).clamp(0, 1))


def test_all_to_all_poisons_with_the_next_label(data):
    x, y = data
    attack = make("all_to_all", m=12)
    assert torch.equal(attack.target_of(y), (y + 1) % K)
    ps = attack.poison(x, y)
    src = ps.poisoned
    assert torch.equal(ps.y[src], (ps.true_y[src] + 1) % K)
    assert len(set(ps.true_y[src].tolist())) > 1  # every class can be poisoned, target 0 too
    rest = torch.ones(len(ps), dtype=torch.bool)
    rest[src] = False
    assert torch.equal(ps.y[rest], ps.true_y[rest])
    with pytest.raises(InputError):
        get_attack("all_to_all", target=2)  # no single target
    with pytest.raises(InputError):
        get_attack("all_to_all", num_classes=3).poison(x, y)  # label 3 needs K >= 4


class _LabelReader(nn.Module):
    """Reads the label hidden in pixel (0, H-1, 0) (untouched by the top-left patch) and answers
    ``(label + shift) mod K``: a model whose backdoor is all-to-all when shift = 1."""

    def __init__(self, shift: int) -> None:
        super().__init__()
        self.shift = shift
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        label = (x[:, 0, H - 1, 0] * 10).round().long()
        return nn.functional.one_hot((label + self.shift) % K, K).float() + self.w


def test_attack_success_rate_counts_label_dependent_targets(data):
    x, y = data
    x = x.clone()
    x[:, 0, H - 1, 0] = y.float() / 10
    attack = make("all_to_all")
    assert attack_success_rate(_LabelReader(1), attack, x, y) == 1.0  # every image counts
    assert attack_success_rate(_LabelReader(0), attack, x, y) == 0.0
    assert attack_success_rate(_LabelReader(2), attack, x, y) == 0.0
    # a single-target attack keeps the old definition: target-class images left out
    badnets = get_attack("badnets", target=1)
    assert torch.equal(badnets.target_of(y), torch.ones_like(y))
    assert attack_success_rate(_LabelReader(1), badnets, x, y) == pytest.approx(1 / 3)  # y=0 of 0,2,3


@pytest.mark.parametrize("name", WILD)
def test_same_seed_same_trigger(name, data):
    x, _ = data
    a, b = make(name, seed=5), make(name, seed=5)
    assert torch.equal(a.apply(x), b.apply(x))
    if name not in ("grid_patch", "all_to_all"):  # fixed pictures; only the samples are seeded
        assert not torch.equal(make(name, seed=6).apply(x), a.apply(x))


@pytest.mark.parametrize("name", WILD)
def test_trains_with_train_model(name, data):
    x, y = data
    attack = make(name, m=8)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(C, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, K))
    model, hist = train_model(net, x, y, attack=attack, epochs=1, batch_size=16, device="cpu",
                              num_classes=K)
    assert len(hist.poisoned.poisoned) == 8 and not model.training
    assert 0.0 <= attack_success_rate(model, attack, x, y) <= 1.0


@pytest.mark.parametrize("name,params", [
    ("grid_patch", {"corner": "middle"}), ("grid_patch", {"cells": 0}),
    ("additive_square", {"amplitude": 0.0}), ("additive_square", {"size_frac": 2.0}),
    ("blend", {"alpha": 0.0}), ("blend", {"picture": "no/such.png"}),
    ("l0_spread", {"k": 0}), ("l2_spread", {"norm": 0.0}), ("all_to_all", {"num_classes": 1}),
])
def test_bad_config_is_an_input_error(name, params):
    with pytest.raises(InputError):
        get_attack(name, **params)


def test_triggers_that_do_not_fit_are_input_errors():
    tiny = torch.rand(1, C, 4, 4)
    with pytest.raises(InputError):
        get_attack("l0_spread", k=17).apply(tiny)
    with pytest.raises(InputError):
        get_attack("grid_patch", cells=5).apply(tiny)
