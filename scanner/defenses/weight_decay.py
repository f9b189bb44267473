"""Weight-decay fine-tuning baseline (paper App. A.3, Table 5).

Cross-entropy fine-tuning on the trusted data with a large weight decay (Table 5: 0.01 on
CIFAR-10, 0.001 on ImageNet, lr 1e-3). The decay is SGD's (an L2 term on every parameter), as the
paper's table lists the SGD optimiser; raise ``lr`` to make the decay bite faster.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scanner.classifier import SplitClassifier
from scanner.defenses.base import (FinetuneConfig, LoopHooks, Monitor, ProgressFn, RepairResult,
                                   ce_step, finetune_loop, pick_lr, sgd_cosine, start_repair)
from scanner.defenses.registry import DEFENSES
from scanner.io.trusted_split import TrustedSplit


@dataclass
class WeightDecayConfig(FinetuneConfig):
    """Weight-decay fine-tuning knobs; defaults from Table 5 (CIFAR-10)."""

    weight_decay: float = 0.01  # Table 5 lambda_w (ImageNet: 1e-3)


@DEFENSES.register("weight_decay", config=WeightDecayConfig, rank=3)
def weight_decay_finetune(pivot: SplitClassifier, split: TrustedSplit, cfg: WeightDecayConfig, *,
                          device: torch.device | None = None, monitor: Monitor | None = None,
                          progress: ProgressFn | None = None) -> RepairResult:
    """Weight decay: cross-entropy fine-tuning with a large L2 weight decay."""
    run, tuned = start_repair(pivot, split, device, cfg.seed)
    lr, kind = pick_lr(cfg, tuned)
    notes = [f"lr {lr:g} ({kind}), weight decay {cfg.weight_decay:g}"]
    opt, sched = sgd_cosine(tuned.parameters(), lr, cfg.steps, momentum=cfg.momentum,
                            weight_decay=cfg.weight_decay)
    return finetune_loop(run, tuned, cfg, ce_step(tuned), opt, sched, notes,
                         LoopHooks(monitor=monitor, progress=progress))
