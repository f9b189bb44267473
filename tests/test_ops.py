"""The pure mathematics on tiny tensors with hand-computed expectations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from scanner.ops.latent import (class_centroids, direction_cosine_sum, pairwise_cosine_sum,
                                parameter_distance, slol_paper)
from scanner.ops.metrics import anomaly_index, attack_success_rate, roc_auc
from scanner.ops.triggers import apply_additive, apply_mask_pattern, tanh_to_unit


def test_class_centroids():
    f = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0]])
    classes, c = class_centroids(f, torch.tensor([5, 5, 2]))
    assert classes.tolist() == [2, 5]
    assert torch.allclose(c, torch.tensor([[0.0, 4.0], [2.0, 1.0]]))


def test_pairwise_cosine_hand_computed():
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # cos(e1,e2)=0, cos(e1,(1,1))=cos(e2,(1,1))=1/sqrt2
    assert float(pairwise_cosine_sum(c)) == pytest.approx(2 / math.sqrt(2), abs=1e-6)


def _loop_direction_cos(p, c):
    total = 0.0
    for i, j in itertools.combinations(range(len(p)), 2):
        total += float(torch.nn.functional.cosine_similarity(p[i] - p[j], c[i] - c[j], dim=0))
    return total


def test_direction_cosine_matches_loop_and_hand_value():
    p = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    c = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    assert float(direction_cosine_sum(p, c)) == pytest.approx(0.0, abs=1e-6)  # orthogonal
    assert float(direction_cosine_sum(p, p)) == pytest.approx(1.0, abs=1e-6)
    assert float(direction_cosine_sum(p, -p)) == pytest.approx(-1.0, abs=1e-6)  # signed
    torch.manual_seed(0)
    p, c = torch.randn(7, 5), torch.randn(7, 5)
    assert float(direction_cosine_sum(p, c)) == pytest.approx(_loop_direction_cos(p, c), abs=1e-5)


def test_slol_paper():
    torch.manual_seed(1)
    p, c = torch.randn(4, 6), torch.randn(4, 6)
    a, b = slol_paper(p, c)
    assert float(a) == pytest.approx(float(pairwise_cosine_sum(c)))
    assert float(b) == pytest.approx(_loop_direction_cos(p, c), abs=1e-5)
    # gradients flow to the tuned centroids; the masked diagonal must not poison them
    c.requires_grad_(True)
    sum(slol_paper(p, c)).backward()
    assert c.grad is not None and torch.isfinite(c.grad).all()


def test_pivotal_slol_terms_are_averaged_over_class_pairs():
    """4 classes: 6 pairs, each term divided by 6; one class: no pair, divided by 1."""
    from scanner.defenses.pivotal import slol_terms

    torch.manual_seed(2)
    p, c = torch.randn(4, 6), torch.randn(4, 6)
    a, b = slol_terms(p, c)
    a0, b0 = slol_paper(p, c)
    assert float(a) == pytest.approx(float(a0) / 6) and float(b) == pytest.approx(float(b0) / 6)
    a1, b1 = slol_terms(p[:1], c[:1])
    assert float(a1) == 0.0 and float(b1) == 0.0


def test_parameter_distance():
    a, b = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[1.0, 2.0]]))
        a.bias.fill_(0.0)
        b.weight.copy_(torch.tensor([[1.0, 0.0]]))
        b.bias.fill_(3.0)
    assert parameter_distance(a, b).item() == pytest.approx((4 + 9) / 3)
    assert parameter_distance(a, a).item() == 0.0
    with pytest.raises(ValueError, match="not in the pivot"):  # matched by name, not by order
        parameter_distance(nn.Sequential(nn.Identity(), a), nn.Sequential(a))


def test_trigger_application():
    x = torch.tensor([[[[0.2, 0.9]]]])
    assert torch.allclose(apply_additive(x, torch.tensor(0.5)), torch.tensor([[[[0.7, 1.0]]]]))
    assert torch.allclose(apply_additive(x, torch.tensor(-0.5)), torch.tensor([[[[0.0, 0.4]]]]))
    m = torch.tensor([[[0.0, 1.0]]])
    p = torch.tensor([[[0.5, 0.5]]])
    assert torch.allclose(apply_mask_pattern(x, m, p), torch.tensor([[[[0.2, 0.5]]]]))
    assert float(tanh_to_unit(torch.tensor(0.0))) == 0.5


def test_asr_ignores_target_class_images():
    pred = torch.tensor([0, 0, 1, 0])
    labels = torch.tensor([0, 1, 1, 2])
    assert attack_success_rate(pred, labels, 0) == pytest.approx(2 / 3)
    assert np.isnan(attack_success_rate(pred, torch.zeros(4, dtype=torch.long), 0))


def test_anomaly_index():
    v = [1.0, 2.0, 3.0, 4.0, 100.0]
    idx = anomaly_index(v)
    # median 3, MAD = median(|v-3|) = median(2,1,0,1,97) = 1 -> scale 1.4826
    assert idx[0] == pytest.approx(-2 / 1.4826) and idx[4] == pytest.approx(97 / 1.4826)


def test_roc_auc_hand_checked():
    # positives 0.9, 0.4 ; negatives 0.5, 0.1, 0.4
    # pairs: 0.9 beats all 3; 0.4 beats 0.1, ties 0.4, loses to 0.5 -> (3 + 1 + 0.5) / 6 = 0.75
    assert roc_auc([0.9, 0.4, 0.5, 0.1, 0.4], [1, 1, 0, 0, 0]) == pytest.approx(0.75)
    assert roc_auc([1, 2], [0, 1]) == 1.0 and roc_auc([1, 2], [1, 0]) == 0.0
    with pytest.raises(ValueError):
        roc_auc([1, 2], [1, 1])


# --- CTI scoring (pure) ---------------------------------------------------------------------

def test_cti_size_score_hand_computed():
    """log L1 = [0, 2, 2, 3, 4]: median 2, MAD 1.4826 -> low-side index 2/1.4826 on class 0."""
    from scanner.detectors.cti import cti_scores

    l1 = np.exp([0.0, 2.0, 2.0, 3.0, 4.0])
    asr_p = np.array([1.0, 0.2, 0.9, 0.9, 0.5])
    asr_t = np.array([0.1, 0.1, 0.3, 0.3, 0.5])  # gaps 0.9, 0.1, 0.6, 0.6, 0.0
    per, score = cti_scores(asr_p, asr_t, l1, min_gap=0.5)
    k = 1.4826
    assert per == pytest.approx([2 / k, 0.0, 0.0, -1 / k, -2 / k])
    assert score == pytest.approx(2 / k)
    # the same small trigger, but the repaired copy obeys it too: a natural feature, no alarm
    per, score = cti_scores(np.array([1.0, 0.2, 0.9, 0.9, 0.5]),
                            np.array([0.9, 0.1, 0.3, 0.3, 0.5]), l1, min_gap=0.5)
    assert per[0] == 0.0 and score == 0.0


def test_a_drop_of_exactly_the_budget_is_within_it():
    """73 -> 71 of 100 images is the 2-point budget exactly; with accuracies held as float32
    means, 0.73 - 0.02 > 0.71, which made repairs keep nothing."""
    from scanner.defenses.base import BestWithinBudget
    from scanner.ops.metrics import accuracy, within_drop

    pred, y = torch.zeros(100, dtype=torch.long), torch.zeros(100, dtype=torch.long)
    pred[73:] = 1
    before = accuracy(pred, y)
    pred[71:] = 1
    after = accuracy(pred, y)
    assert after < before - 0.02  # the trap itself
    assert within_drop(after, before, 0.02)
    pred[70:] = 1
    assert not within_drop(accuracy(pred, y), before, 0.02)  # 3 images is over it
    keeper = BestWithinBudget(nn.Linear(1, 1), before, 0.02)
    assert keeper.offer(nn.Linear(1, 1), 25, after) and keeper.step == 25


def test_delta_rule_keeps_the_latest_checkpoint_within_budget_by_hand():
    """Checkpoints (step, held-out accuracy), pivot 0.70, budget 2 points: 100 and 200 are out of
    budget; the kept one is the latest within it, 175, although 150 was more accurate. Each
    checkpoint out of budget counts towards patience; one within it resets the count."""
    from scanner.defenses.base import BestWithinBudget

    keeper = BestWithinBudget(nn.Linear(1, 1), 0.70, 0.02)
    kept = []
    for step, cda in [(50, 0.69), (75, 0.70), (100, 0.60), (125, 0.68), (150, 0.70),
                      (175, 0.69), (200, 0.65)]:
        kept.append(keeper.offer(nn.Linear(1, 1), step, cda))
    assert kept == [True, True, False, True, True, True, False]
    assert (keeper.step, keeper.cda, keeper.exceeded) == (175, 0.69, 1)


def test_paired_drop_se_by_hand():
    """Per-image differences [0, 0, +1, -1]: mean 0, sample variance 2/3, s.e. sqrt(2/3)/2."""
    from scanner.ops.metrics import paired_drop_se

    y = torch.tensor([0, 1, 2, 3])
    ref, new = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 0, 3])
    assert paired_drop_se(ref, new, y) == pytest.approx((2 / 3) ** 0.5 / 2)
    assert paired_drop_se(ref, ref, y) == 0.0  # same predictions: no uncertainty about the drop
    assert math.isnan(paired_drop_se(ref[:1], new[:1], y[:1]))


def test_drop_note_warns_only_when_the_budget_is_unresolved():
    from scanner.defenses.base import drop_uncertainty_note

    wide = drop_uncertainty_note(0.01, 0.03, 100, 0.02)
    assert "+1.0 points, standard error 3.0 (paired, 100 images)" in wide
    assert "wider than the 2-point budget" in wide
    assert "wider" not in drop_uncertainty_note(0.01, 0.009, 1000, 0.02)
