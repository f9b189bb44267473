"""What every repair returns, and the shared loop mechanics (held-out tracking, rollback)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from scanner.classifier import SplitClassifier, predict
from scanner.ops.metrics import accuracy

ProgressFn = Callable[[int, int, dict], None]
Monitor = Callable[[nn.Module], dict]  # extra measurements per checkpoint (e.g. a known trigger's ASR)


@dataclass
class Checkpoint:
    step: int
    cda: float
    extra: dict = field(default_factory=dict)
    losses: dict = field(default_factory=dict)


@dataclass
class RepairResult:
    """The repaired model (best state within the accuracy budget) and how it got there."""

    model: SplitClassifier
    pivot_cda: float
    best_step: int
    best_cda: float
    trajectory: list[Checkpoint]
    moved: bool  # False: no state within the budget differed from the pivot - not a repair
    param_distance: float
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def cda_drop(self) -> float:
        return self.pivot_cda - self.best_cda


class BestWithinBudget:
    """Keeps the latest checkpoint whose held-out accuracy is within ``max_drop`` of the pivot's.

    Why latest and not most accurate: repair moves away from the pivot over time, and later states
    within the budget have moved furthest from the backdoor (the paper's Delta rule).
    """

    def __init__(self, model: nn.Module, pivot_cda: float, max_drop: float) -> None:
        self.pivot_cda, self.max_drop = pivot_cda, max_drop
        self.state = copy.deepcopy(model.state_dict())
        self.step, self.cda = 0, pivot_cda
        self.exceeded = 0

    def offer(self, model: nn.Module, step: int, cda: float) -> bool:
        if cda >= self.pivot_cda - self.max_drop:
            self.state = copy.deepcopy(model.state_dict())
            self.step, self.cda = step, cda
            self.exceeded = 0
            return True
        self.exceeded += 1
        return False


def heldout_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return accuracy(predict(model, x), y)
