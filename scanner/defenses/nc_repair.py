"""Neural Cleanse repair baseline (Wang et al. 2019; paper Alg. 6, App. A.3, Table 5).

1. Reverse a mask/pattern trigger for every class with the Neural Cleanse detector
   (``scanner.detectors.neural_cleanse.NCDetector``: batched inversion, NC's cost schedule, MAD
   anomaly index). Table 5: 100 inversion steps per class, lambda_N = 2e-2, used here as NC's
   initial L1 cost (the schedule then adapts it per class).
2. Unlearn the trigger of the flagged class with the highest anomaly index; when no class is
   flagged, the class with the smallest mask norm (Alg. 6 line 11), said so in the notes.
3. Fine-tune with cross-entropy on batches whose ``stamp_frac`` (half) of images carry the reversed
   trigger (stamped after augmentation) and keep their TRUE label. Alg. 6 alternates clean and
   stamped batches; mixing inside each batch is the same expectation with a steadier gradient.

A detection already run on the same model can be passed as ``detection=`` to skip step 1. The
trajectory records ``reversed_asr``: the reversed trigger's success on the held-out images.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from scanner.classifier import SplitClassifier
from scanner.defenses.base import (FinetuneConfig, LoopHooks, Monitor, ProgressFn, RepairResult,
                                   ce_step, finetune_loop, pick_lr, sgd_cosine, start_repair)
from scanner.defenses.registry import DEFENSES
from scanner.detectors.inversion import InversionConfig, TriggerSet, trigger_success
from scanner.detectors.neural_cleanse import NCDetector
from scanner.detectors.result import DetectionResult
from scanner.io.trusted_split import TrustedSplit


def _table5_inversion() -> InversionConfig:
    return InversionConfig(form="mask", steps=100, batch_size=32, lr=0.1, init_cost=2e-2)


@dataclass
class NCRepairConfig(FinetuneConfig):
    """Neural Cleanse repair knobs; defaults from Table 5 (CIFAR-10)."""

    weight_decay: float = 0.0  # Table 5
    stamp_frac: float = 0.5  # share of each batch stamped with the reversed trigger
    # Neural Cleanse's inversion (its seed follows ``seed``)
    inversion: InversionConfig = field(default_factory=_table5_inversion)
    num_classes: int | None = None  # None: the model's number of logits


def choose_class(det: DetectionResult) -> tuple[int, str]:
    """The flagged class with the highest anomaly index, else the smallest-mask-norm class."""
    score = {s.cls: s.score for s in det.per_class}
    if det.flagged:
        c = max(det.flagged, key=lambda k: score[k])
        return c, f"class {c} flagged by Neural Cleanse (anomaly index {score[c]:.2f})"
    l1 = {s.cls: s.trigger_l1 for s in det.per_class}
    c = min(l1, key=lambda k: l1[k])
    return c, (f"no class flagged (max anomaly index {det.model_score:.2f}); unlearning the "
               f"smallest-mask class {c} (mask L1 {l1[c]:.1f}, median "
               f"{float(np.median(list(l1.values()))):.1f})")


def single_trigger(triggers: TriggerSet, cls: int) -> TriggerSet:
    """The one trigger of ``cls`` as its own TriggerSet."""
    i = triggers.classes.index(cls)
    pick = (lambda t: None if t is None else t[i:i + 1])
    return TriggerSet([cls], triggers.form, mask=pick(triggers.mask),
                      pattern=pick(triggers.pattern), delta=pick(triggers.delta),
                      final_cost=triggers.final_cost[i:i + 1])


def stamp_half(trigger: TriggerSet, frac: float):
    """``batch_fn``: stamp ``trigger`` on a random ``frac`` of the batch, labels unchanged."""
    def batch_fn(xb: torch.Tensor, yb: torch.Tensor, g: torch.Generator):
        k = int(round(frac * len(yb)))
        rows = torch.randperm(len(yb), generator=g)[:k]
        xb = xb.clone()
        xb[rows] = trigger.apply(0, xb[rows])
        return xb, yb
    return batch_fn


@DEFENSES.register("nc_repair", config=NCRepairConfig, rank=4)
def nc_repair(pivot: SplitClassifier, split: TrustedSplit, cfg: NCRepairConfig, *,
              device: torch.device | None = None, monitor: Monitor | None = None,
              progress: ProgressFn | None = None,
              detection: DetectionResult | None = None) -> RepairResult:
    """Neural Cleanse repair: reverse the triggers, unlearn the suspicious class's trigger."""
    run, tuned = start_repair(pivot, split, device, cfg.seed)
    pivot, device = run.pivot, run.device
    if detection is None or detection.triggers is None:
        num_classes = cfg.num_classes
        if num_classes is None:
            with torch.no_grad():
                num_classes = int(pivot(split.tune.x[:1].to(device)).shape[-1])
        detector = NCDetector(dataclasses.replace(cfg.inversion, seed=cfg.seed))
        detection = detector(pivot, split, num_classes,
                             device=device, progress=progress)
        source = f"reversed {num_classes} triggers in {detection.wall_s:.1f}s"
    else:
        source = "reused the given Neural Cleanse detection"
    cls, why = choose_class(detection)
    trig = single_trigger(detection.triggers, cls)
    asr0 = trigger_success(pivot, trig, split.held.x, split.held.y)[0]
    lr, kind = pick_lr(cfg, tuned)
    notes = [f"lr {lr:g} ({kind}); {source}; {why}; reversed trigger ASR on the suspect model "
             f"{asr0:.3f}"]

    def watch(model):
        extra = monitor(model) if monitor else {}
        was_training = model.training
        model.eval()  # trigger_success does not switch modes; live BN must not see these batches
        try:
            return {**extra, "reversed_asr": trigger_success(model, trig, split.held.x, split.held.y)[0]}
        finally:
            model.train(was_training)

    opt, sched = sgd_cosine(tuned.parameters(), lr, cfg.steps, momentum=cfg.momentum,
                            weight_decay=cfg.weight_decay)
    res = finetune_loop(run, tuned, cfg, ce_step(tuned), opt, sched, notes,
                        LoopHooks(monitor=watch, progress=progress,
                                  batch_fn=stamp_half(trig, cfg.stamp_frac)))
    res.info.update(nc_class=cls, nc_flagged=list(detection.flagged),
                    nc_model_score=detection.model_score, trigger=trig,
                    reversed_asr_before=asr0)
    return res
