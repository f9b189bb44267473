"""Weight-decay fine-tuning baseline (paper App. A.3, Table 5).

Cross-entropy fine-tuning on the trusted data with a large weight decay (Table 5: 0.01 on
CIFAR-10, 0.001 on ImageNet, lr 1e-3). The decay is SGD's (an L2 term on every parameter), as the
paper's table lists the SGD optimiser; raise ``lr`` to make the decay bite faster.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from scanner.classifier import SplitClassifier
from scanner.defenses.base import (Monitor, ProgressFn, RepairResult, cfg_for_device, ce_step,
                                   finetune_loop, pick_lr, sgd_cosine, start_repair)


@dataclass
class WeightDecayConfig:
    """Weight-decay fine-tuning knobs; defaults from Table 5 (CIFAR-10)."""

    steps: int = 300  # Table 5: 1 000 (``for_device`` on CUDA)
    batch_size: int = 64  # Table 5: 128
    lr: float | None = None
    lr_bn: float = 1e-3  # Table 5
    lr_no_bn: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.01  # Table 5 lambda_w (ImageNet: 1e-3)
    eval_every: int = 25
    max_cda_drop: float = 0.02
    patience: int = 4
    freeze_bn_stats: bool = True
    augment: bool = True
    seed: int = 0

    @classmethod
    def for_device(cls, device: torch.device, **overrides) -> "WeightDecayConfig":
        return cfg_for_device(cls, device, {"steps": 1000, "batch_size": 128, "eval_every": 50},
                              overrides)


def weight_decay_finetune(pivot: SplitClassifier, x_tune: torch.Tensor, y_tune: torch.Tensor,
                          x_held: torch.Tensor, y_held: torch.Tensor, cfg: WeightDecayConfig, *,
                          device: torch.device | None = None, monitor: Monitor | None = None,
                          progress: ProgressFn | None = None) -> RepairResult:
    """Weight decay: cross-entropy fine-tuning with a large L2 weight decay."""
    t0 = time.perf_counter()
    pivot, tuned, g, device = start_repair(pivot, device, cfg.seed)
    lr, kind = pick_lr(cfg, tuned)
    notes = [f"lr {lr:g} ({kind}), weight decay {cfg.weight_decay:g}"]
    opt, sched = sgd_cosine(tuned.parameters(), lr, cfg.steps, momentum=cfg.momentum,
                            weight_decay=cfg.weight_decay)
    return finetune_loop(pivot, tuned, x_tune, y_tune, x_held, y_held, cfg, ce_step(tuned), opt,
                         sched, g=g, device=device, notes=notes, t0=t0, monitor=monitor,
                         progress=progress)
