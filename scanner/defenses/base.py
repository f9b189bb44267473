"""What every repair returns, and the shared loop mechanics (held-out tracking, rollback).

``finetune_loop`` is the one training loop behind Pivotal Tuning and all baselines, and
``FinetuneConfig`` the knobs they all share.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from scanner.classifier import SplitClassifier, predict
from scanner.io.trusted_split import TrustedSplit
from scanner.ops.latent import parameter_distance
from scanner.ops.metrics import accuracy, paired_drop_se, within_drop

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
    info: dict = field(default_factory=dict)  # method-specific facts (pruned channels, NC class)
    # standard error of the kept state's held-out drop (paired, same images); NaN if not moved
    cda_drop_se: float = math.nan

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
        if within_drop(cda, self.pivot_cda, self.max_drop):
            self.state = copy.deepcopy(model.state_dict())
            self.step, self.cda = step, cda
            self.exceeded = 0
            return True
        self.exceeded += 1
        return False


def heldout_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return accuracy(predict(model, x), y)


# ---------------------------------------------------------------------------------------------
# Shared training-loop mechanics: every repair (Pivotal Tuning and the baselines) is "a trainable
# clone of the pivot, one loss per batch, held-out accuracy every ``eval_every`` steps, keep the
# latest state within the Delta budget". Only the loss (``step_fn``) and a few hooks differ.
# ---------------------------------------------------------------------------------------------

# (images on device, labels on device, step index) -> (loss, named loss parts for the trajectory)
StepFn = Callable[[torch.Tensor, torch.Tensor, int],
                  "tuple[torch.Tensor, dict[str, torch.Tensor]]"]
# (images, labels, generator) -> (images, labels): extra per-batch data transform (CPU, before .to)
BatchFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator],
                   "tuple[torch.Tensor, torch.Tensor]"]
AfterStep = Callable[[nn.Module], None]  # called after every optimizer step (e.g. keep a mask)


def augment_batch(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random crop (pad h/8, reflect) + horizontal flip on a [0,1] batch."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    i = int(torch.randint(0, 2 * pad + 1, (1,), generator=g))
    j = int(torch.randint(0, 2 * pad + 1, (1,), generator=g))
    x = xp[:, :, i:i + h, j:j + w]
    flip = torch.rand(n, generator=g) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


_Cfg = TypeVar("_Cfg", bound="FinetuneConfig")


@dataclass
class FinetuneConfig:
    """The knobs every repair shares: schedule, learning rate, the Delta rule and the seed.

    The defaults are the baselines' (paper App. A.3, Table 5, at CPU size); each defense's config
    extends this with its own knobs and re-declares the shared ones it sets differently.
    """

    steps: int = 300  # Table 5: 1 000 (``for_device`` on CUDA)
    batch_size: int = 64  # Table 5: 128
    lr: float | None = None  # None: ``lr_bn`` or ``lr_no_bn`` by the model's kind (``pick_lr``)
    lr_bn: float = 1e-3  # Table 5
    lr_no_bn: float = 1e-3
    momentum: float = 0.9
    eval_every: int = 25  # held-out accuracy (and the Delta rule) every this many steps
    max_cda_drop: float = 0.02  # Delta: how much held-out accuracy a kept state may lose
    # Stop after this many consecutive checkpoints outside the budget; 0 = never.
    patience: int = 4
    freeze_bn_stats: bool = True
    augment: bool = True  # random crop + flip of every batch (``augment_batch``)
    seed: int = 0

    # What ``for_device`` sets on CUDA: the paper's scale. CPU keeps the defaults above, which
    # finish in minutes.
    CUDA: ClassVar[dict] = {"steps": 1000, "batch_size": 128, "eval_every": 50}

    @classmethod
    def for_device(cls: type[_Cfg], device: torch.device, **overrides) -> _Cfg:
        """The defaults for ``device`` (``CUDA`` there), then ``overrides`` (``None`` ignored)."""
        return cfg_for_device(cls, device, cls.CUDA, overrides)


@dataclass
class RepairRun:
    """One repair's fixed context, set up by :func:`start_repair` and read by
    :func:`finetune_loop` (NAD runs the loop twice in one context: teacher, then student)."""

    pivot: SplitClassifier  # frozen: eval mode, no gradients; the rollback state
    split: TrustedSplit  # tune: trained on; held: decides which state is kept (never trained on)
    g: torch.Generator  # seeded; batch order, augmentation and per-batch draws all come from it
    device: torch.device
    t0: float  # start time: the result's ``wall_s`` counts from here


def start_repair(pivot: SplitClassifier, split: TrustedSplit, device: torch.device | None,
                 seed: int) -> tuple[RepairRun, SplitClassifier]:
    """Seed everything, freeze the pivot (eval, no grads); returns (the run, a trainable clone)."""
    t0 = time.perf_counter()
    device = device or next(pivot.parameters()).device
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    pivot = pivot.to(device).eval()
    for p in pivot.parameters():
        p.requires_grad_(False)
    tuned = pivot.clone()
    for p in tuned.parameters():
        p.requires_grad_(True)
    return RepairRun(pivot, split, g, device, t0), tuned


def pick_lr(cfg: FinetuneConfig, model: SplitClassifier) -> tuple[float, str]:
    """``cfg.lr`` if set, else ``cfg.lr_bn`` for live BatchNorm and ``cfg.lr_no_bn`` otherwise.

    Frozen BN statistics make a BN model behave like a BN-folded one: both need the small step
    (lr 1e-2 diverged within 5 steps on both in our probes); live BN statistics tolerate 1e-2.
    Returns (lr, a description of the model kind for the notes).
    """
    has_bn = model.has_batchnorm()
    live_bn = has_bn and not cfg.freeze_bn_stats
    lr = cfg.lr if cfg.lr is not None else (cfg.lr_bn if live_bn else cfg.lr_no_bn)
    kind = ("live BatchNorm" if live_bn
            else "frozen BatchNorm" if has_bn else "no BatchNorm (folded)")
    return lr, kind


def sgd_cosine(params, lr: float, steps: int, momentum: float = 0.9, weight_decay: float = 0.0,
               nesterov: bool = True):
    """SGD (Nesterov when momentum > 0) with a cosine schedule to 0 over ``steps``."""
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                          nesterov=nesterov and momentum > 0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(1, steps))))
    return opt, sched


def ce_step(model: nn.Module) -> StepFn:
    """Plain cross-entropy fine-tuning as a ``step_fn``."""
    def step(xb: torch.Tensor, yb: torch.Tensor, _step: int):
        ce = F.cross_entropy(model(xb), yb)
        return ce, {"ce": ce}
    return step


@dataclass
class LoopHooks:
    """The optional callbacks of :func:`finetune_loop`; a defense sets the ones it needs."""

    monitor: Monitor | None = None  # extra measurements per checkpoint (in ``Checkpoint.extra``)
    progress: ProgressFn | None = None
    progress_extra: dict = field(default_factory=dict)  # added to every progress report
    batch_fn: BatchFn | None = None  # after augmentation, before the batch moves to the device
    after_step: AfterStep | None = None  # after every optimizer step


def finetune_loop(run: RepairRun, tuned: SplitClassifier, cfg: FinetuneConfig, step_fn: StepFn,
                  opt: torch.optim.Optimizer, sched, notes: list[str],
                  hooks: LoopHooks | None = None) -> RepairResult:
    """Train ``tuned`` with ``step_fn`` and keep the latest state within the Delta budget.

    Batches are a seeded permutation of the tuning set (only full batches), augmented, then
    ``hooks.batch_fn``; ``hooks.after_step`` runs after each optimizer step. The rollback state
    is the *pivot's*: when no checkpoint stays within the budget the result is the unchanged
    pivot (``moved`` False), even if the tuned copy was modified before the loop (e.g. pruned).
    """
    hooks = hooks or LoopHooks()
    pivot, g, device = run.pivot, run.g, run.device
    tune, held = run.split.tune, run.split.held
    x_tune, y_tune, x_held, y_held = tune.x, tune.y, held.x, held.y
    pivot_pred = predict(pivot, x_held)  # kept for the drop's standard error at the end
    pivot_cda = accuracy(pivot_pred, y_held)
    keeper = BestWithinBudget(pivot, pivot_cda, cfg.max_cda_drop)

    def measure(m: nn.Module) -> dict:
        return hooks.monitor(m) if hooks.monitor else {}

    traj = [Checkpoint(0, pivot_cda, measure(pivot))]
    n = len(y_tune)
    step = 0
    diverged = False
    while step < cfg.steps:
        perm = torch.randperm(n, generator=g)
        for i in range(0, n - min(cfg.batch_size, n) + 1, cfg.batch_size):
            if step >= cfg.steps:
                break
            idx = perm[i:i + cfg.batch_size]
            xb, yb = x_tune[idx], y_tune[idx]
            if cfg.augment:
                xb = augment_batch(xb, g)
            if hooks.batch_fn is not None:
                xb, yb = hooks.batch_fn(xb, yb, g)
            xb, yb = xb.to(device), yb.to(device)
            tuned.train()
            if cfg.freeze_bn_stats:
                tuned.set_bn_eval()
            loss, parts = step_fn(xb, yb, step)
            if not torch.isfinite(loss):
                diverged = True
                notes.append(f"loss became non-finite at step {step}; kept the last good state")
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if hooks.after_step is not None:
                hooks.after_step(tuned)
            step += 1
            if step % cfg.eval_every == 0 or step == cfg.steps:
                cda = heldout_accuracy(tuned, x_held, y_held)
                seen = measure(tuned)
                keeper.offer(tuned, step, cda)
                ck = Checkpoint(step, cda, seen,
                                {**{k: _scalar(v) for k, v in parts.items()}, "total": loss.item()})
                traj.append(ck)
                if hooks.progress:
                    hooks.progress(step, cfg.steps,
                                   {"cda": cda, **ck.extra, **hooks.progress_extra})
                if cfg.patience and keeper.exceeded >= cfg.patience:
                    notes.append(f"stopped at step {step}: held-out accuracy stayed more than "
                                 f"{cfg.max_cda_drop:.0%} below the pivot's")
                    step = cfg.steps
                    break
        if diverged:
            break
    tuned.load_state_dict(keeper.state)
    tuned.eval()
    with torch.no_grad():
        dist = float(parameter_distance(tuned, pivot))
    moved = keeper.step > 0 and dist > 0
    se = math.nan
    if not moved:
        notes.append("no tuned state stayed within the accuracy budget: the model was NOT repaired")
    else:
        se = paired_drop_se(pivot_pred, predict(tuned, x_held), y_held.cpu())
        notes.append(drop_uncertainty_note(pivot_cda - keeper.cda, se, len(y_held),
                                           cfg.max_cda_drop))
    return RepairResult(model=tuned, pivot_cda=pivot_cda, best_step=keeper.step,
                        best_cda=keeper.cda, trajectory=traj, moved=moved, param_distance=dist,
                        notes=notes, wall_s=time.perf_counter() - run.t0, cda_drop_se=se)


def drop_uncertainty_note(drop: float, se: float, n: int, max_drop: float) -> str:
    """What the held-out drop is worth: its standard error, and a warning when +-2 s.e. is wider
    than the budget (then the Delta rule cannot tell a drop inside the budget from one outside:
    100 held-out images often cannot resolve 2 points, RESULTS 3e)."""
    text = (f"held-out accuracy drop {100 * drop:+.1f} points, standard error "
            f"{100 * se:.1f} (paired, {n} images)")
    if math.isfinite(se) and 2 * se > max_drop:
        text += (f": +-2 standard errors is wider than the {100 * max_drop:g}-point budget, so "
                 "the true drop may exceed it; more trusted images narrow this")
    return text


def _scalar(v) -> float:
    return v.item() if isinstance(v, torch.Tensor) else float(v)


def cfg_for_device(cls, device: torch.device, cuda_base: dict, overrides: dict):
    """Build config ``cls``: CPU defaults finish in minutes; ``cuda_base`` (paper scale) on CUDA.

    ``None`` overrides are ignored, so callers can pass optional flags straight through.
    """
    base = dict(cuda_base) if device.type == "cuda" else {}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**base)
