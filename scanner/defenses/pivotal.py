"""Pivotal Tuning repair with the Soft Latent Orthogonalization Loss (paper Sec. 4.1, Alg. 3).

loss = CE(tuned(x), y) + lambda_S * w(t) * SLOL(pivot, tuned, batch) + lambda_P * ParamDist(tuned, pivot)

Deliberate departures from a literal transcription, each because a probe showed the literal form
failing on imported models (see DESIGN.md):
- the learning rate depends on whether the model still has BatchNorm (ONNX exports fold it into
  Conv and diverge at the paper's lr); BN running statistics stay frozen by default, because the
  trusted batches are small;
- the SLOL weight is warmed up linearly (``w(t)``) so the cross-model term cannot wreck accuracy
  before cross-entropy has anything to hold on to; SLOL terms are averaged over class pairs;
- the held-out part of the trusted data decides which state is kept (Delta rule with rollback);
- two terms the paper does not have, on by default because without them the repair did not move a
  real BadNets backdoor at all on imported models (ASR 0.99 -> 0.99, README "Measured so far"):
  online trigger unlearning (``unlearn``, scanner.defenses.unlearn: small mask + pattern triggers
  chased against the tuned copy and unlearned) and distillation of the pivot's clean predictions
  (``distill``, KL(pivot || tuned) on the clean batch), which keeps the 400-image fine-tune from
  overfitting away clean accuracy. ``unlearn=0, distill=0`` is the paper's loss;
- the unlearning is focused (``focus``): half of the triggered images carry a trigger for the
  suspect class (the top class of a mask inversion run first), not a uniformly random class, and
  distillation weighs 3 (session 9, RESULTS 3c: 3/6 held-out BadNets models within issue 4's
  target against 1/6 for the uniform form). The scan's CTI calibration keeps the unfocused form
  (``CALIBRATION``): it must not be told which class to suspect;
- ``unfold_bn`` re-inserts calibrated BatchNorm for tuning (scanner.defenses.batchnorm) and
  ``optimizer="adam"`` scales steps per parameter: both were tried against the folded-BN step
  size problem and are kept as options, off by default (neither moved the backdoor alone).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scanner.classifier import SplitClassifier
from scanner.defenses.base import (Monitor, adam_cosine, ProgressFn, RepairResult, augment_batch,
                                   cfg_for_device, finetune_loop, pick_lr, random_patches,
                                   sgd_cosine, start_repair)
from scanner.defenses.batchnorm import fold_batchnorm, unfold_batchnorm
from scanner.defenses.unlearn import OnlineTriggers, UnlearnConfig, unlearning_loss
from scanner.detectors.result import DetectionResult
from scanner.ops.latent import class_centroids, parameter_distance, slol_code, slol_paper


@dataclass
class PivotalConfig:
    """Knobs of Pivotal Tuning. ``None`` learning rates are chosen per model (BN or not)."""

    steps: int = 300
    batch_size: int = 64
    lr: float | None = None
    lr_bn: float = 1e-2
    # Half the rate sessions 2-12 used (1e-3): on the dev zoo 5/6 on target against 4/6, then on
    # the eighth fresh zoo 5/6 against 4/6 (RESULTS 3g); the first steps at 1e-3 wrecked the
    # accuracy of some BN-folded models for good.
    lr_no_bn: float = 5e-4
    momentum: float = 0.9
    lambda_s: float = 0.05
    lambda_p: float = 20_000.0
    optimizer: str = "sgd"  # "sgd" | "adam"
    slol_form: str = "paper"  # "paper" | "code"
    slol_mean: bool = True  # average SLOL terms over class pairs instead of summing
    warmup_frac: float = 0.2
    eval_every: int = 25
    max_cda_drop: float = 0.02
    # Stop after this many consecutive checkpoints outside the budget; 0 = never. Off for Pivotal
    # Tuning: trigger unlearning dips accuracy first and recovers as the step size decays (digits:
    # 0.95 -> 0.81 at step 50 -> 0.95-0.99 from step 125), which a patience of 4 cut short.
    patience: int = 0
    # Live BatchNorm statistics (train mode, as the paper): with trigger unlearning on, frozen
    # statistics collapsed a BN digits model to 0.08 accuracy at lr 1e-3, while live statistics
    # at lr 1e-2 kept it within 2 points and removed the backdoor (ASR 1.0 -> 0.03).
    freeze_bn_stats: bool = False
    augment: bool = True
    patch_aug: float = 0.0  # share of images that get random small patches (local-trigger prior)
    unlearn: float = 0.3  # weight of online trigger unlearning (0: off; scanner.defenses.unlearn)
    distill: float = 3.0  # weight of KL(pivot || tuned) on the clean batch (0: off)
    unlearn_frac: float = 0.5
    unlearn_mask_cost: float = 1e-2
    unlearn_target: float = 0.25  # share of triggered images the online triggers should fool
    unfold_bn: bool = False  # re-insert calibrated BatchNorm into BN-folded models while tuning
    # Share of the unlearning triggers spent on the suspect class (0: off): the top class of the
    # given detection or, when none is given, of a mask inversion of ``focus_steps`` steps run
    # here. Only the class is taken: its online trigger still starts from random, because one
    # started from the reversed trigger stayed near it and left the real trigger working
    # (dev zoo: mean ASR 0.16 against 0.02 unseeded; RESULTS 3c).
    focus: float = 0.5
    focus_steps: int = 200
    # Which state within the budget is kept: "latest" (the paper's Delta rule) or "least_probe",
    # the latest whose suspect-trigger success is within ``keep_slack`` of the lowest seen
    # (scanner.defenses.base.LeastBackdoorWithinBudget; needs a focus with a reversed trigger).
    keep: str = "latest"
    keep_slack: float = 0.01
    # A run that kept nothing (every checkpoint outside the budget) is tried again at half the
    # learning rate, this many times. Why: on some BN-folded models the first few steps at the
    # rate wreck accuracy for good (fresh resnet8_badnets_s120 at the old 1e-3: 0.67 -> 0.27
    # held-out by step 3, nothing kept at three seeds, repaired at half and a quarter of the
    # rate; RESULTS 3g). It changes only runs that would otherwise be no repair.
    lr_retries: int = 1
    seed: int = 0

    @classmethod
    def for_device(cls, device: torch.device, **overrides) -> "PivotalConfig":
        """CPU defaults finish in minutes; paper-scale (2 000 steps, batch 128) on CUDA."""
        return cfg_for_device(cls, device, {"steps": 2000, "batch_size": 128, "eval_every": 50},
                              overrides)


# What the scan's calibrated detectors (CTI, ratio) and their canary tune with: the repair as it
# was when their thresholds and figures were measured (sessions 5-8). A focused repair would take
# its suspect class from a mask inversion, and CTI would then partly repeat that verdict.
CALIBRATION = {"focus": 0.0, "distill": 1.0, "lr_retries": 0, "lr_no_bn": 1e-3}

# kept under their old names for callers of this module
_augment = augment_batch
_random_patches = random_patches


def slol_terms(form: str, pivot_c: torch.Tensor, tuned_c: torch.Tensor, mean: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = (slol_paper if form == "paper" else slol_code)(pivot_c, tuned_c)
    if mean:
        k = pivot_c.shape[0]
        pairs = max(1, k * (k - 1) // 2)
        a = a / pairs if form == "paper" else a
        b = b / pairs
    return a, b


def pivotal_tuning(pivot: SplitClassifier, x_tune: torch.Tensor, y_tune: torch.Tensor,
                   x_held: torch.Tensor, y_held: torch.Tensor, cfg: PivotalConfig, *,
                   device: torch.device | None = None, monitor: Monitor | None = None,
                   progress: ProgressFn | None = None,
                   detection: DetectionResult | None = None) -> RepairResult:
    """Repair ``pivot`` (left untouched) and return the best tuned copy within the CDA budget.

    ``detection``: a detection of the same model (the scan's); ``focus`` takes its top class.
    """
    if cfg.keep not in ("latest", "least_probe"):
        raise ValueError(f"keep must be 'latest' or 'least_probe', got {cfg.keep!r}")
    t0 = time.perf_counter()
    pivot, tuned, g, device = start_repair(pivot, device, cfg.seed)
    notes: list[str] = []
    suspect = None
    if cfg.unlearn > 0 and cfg.focus > 0:
        suspect, detection, why = find_suspect(pivot, x_tune, y_tune, x_held, y_held, cfg,
                                               detection, device, progress)
        notes.append(why)
    unfolded = 0
    if cfg.unfold_bn and not tuned.has_batchnorm():
        unfolded = unfold_batchnorm(tuned, x_tune.to(device))
        notes.append(f"re-inserted {unfolded} calibrated BatchNorm layers for tuning; "
                     "folded back afterwards")
    start = copy.deepcopy(tuned) if unfolded else None
    lr, kind = pick_lr(cfg, tuned)
    notes.insert(0, f"lr {lr:g} ({kind}), SLOL form {cfg.slol_form}, "
                    f"lambda_S {cfg.lambda_s:g}, lambda_P {cfg.lambda_p:g}")
    if cfg.optimizer == "adam":
        opt, sched = adam_cosine(tuned.parameters(), lr, cfg.steps)
    else:
        opt, sched = sgd_cosine(tuned.parameters(), lr, cfg.steps, momentum=cfg.momentum)
    warm = max(1, int(cfg.warmup_frac * cfg.steps))
    triggers = None
    if cfg.unlearn > 0:
        with torch.no_grad():
            k = pivot(x_tune[:1].to(device)).shape[1]
        triggers = OnlineTriggers(k, tuple(x_tune.shape[1:]),
                                  UnlearnConfig(frac=cfg.unlearn_frac,
                                                mask_cost=cfg.unlearn_mask_cost,
                                                target_fooled=cfg.unlearn_target), g, device)

    def step_fn(xb: torch.Tensor, yb: torch.Tensor, step: int):
        ft = tuned.features(xb)
        lt = tuned.head(ft)
        ce = F.cross_entropy(lt, yb)
        with torch.no_grad():
            fp = pivot.features(xb)
            lp = pivot.head(fp) if cfg.distill > 0 else None
        _, tc = class_centroids(ft, yb)
        _, pc = class_centroids(fp, yb)
        sa, sb = slol_terms(cfg.slol_form, pc, tc, cfg.slol_mean)
        pd = parameter_distance(tuned, pivot)
        w = min(1.0, (step + 1) / warm)
        loss = ce + cfg.lambda_s * w * (sa + sb) + cfg.lambda_p * pd
        parts = {"ce": ce, "slol_a": sa, "slol_b": sb, "param_dist": pd}
        if lp is not None:
            kl = F.kl_div(F.log_softmax(lt, 1), F.log_softmax(lp, 1), log_target=True,
                          reduction="batchmean")
            loss = loss + cfg.distill * kl
            parts["distill"] = kl
        if triggers is not None:
            ul, fooled = unlearning_loss(tuned, triggers, xb, yb, triggers.mask_w.shape[0], g,
                                         focus_cls=suspect, focus=cfg.focus)
            loss = loss + cfg.unlearn * w * ul
            parts.update(unlearn=ul, fooled=fooled, mask_cost=triggers.cost)
        return loss, parts

    probe = None
    if cfg.keep == "least_probe":
        probe = suspect_probe(suspect, detection, x_tune, y_tune, x_held, y_held)
        notes.append("kept the latest state within budget whose suspect-trigger success is within "
                     f"{cfg.keep_slack:g} of the lowest seen" if probe is not None else
                     "keep=least_probe needs a reversed trigger for the suspect class; none was "
                     "given, so the latest state within budget was kept")
    res = finetune_loop(pivot, tuned, x_tune, y_tune, x_held, y_held, cfg, step_fn, opt, sched,
                        g=g, device=device, notes=notes, t0=t0, monitor=monitor,
                        progress=progress, start=start, probe=probe, probe_slack=cfg.keep_slack)
    if unfolded:
        fold_batchnorm(res.model)
    if suspect is not None:
        res.info.update(focus_class=suspect, focus_score=detection.model_score)
    if not res.moved and cfg.lr_retries > 0:
        return _retry_at_half_lr(res, lr, pivot, x_tune, y_tune, x_held, y_held, cfg,
                                 device=device, monitor=monitor, progress=progress,
                                 detection=detection)
    return res


def _retry_at_half_lr(failed: RepairResult, lr: float, pivot, x_tune, y_tune, x_held, y_held,
                      cfg: PivotalConfig, **kw) -> RepairResult:
    """The same repair (same seed, same suspect: the detection is handed over) at ``lr / 2``;
    the failed run's notes and time are carried into the result."""
    retry = dataclasses.replace(cfg, lr=lr / 2, lr_retries=cfg.lr_retries - 1)
    res = pivotal_tuning(pivot, x_tune, y_tune, x_held, y_held, retry, **kw)
    res.notes = failed.notes + [f"nothing was kept at lr {lr:g}: tried again at lr {lr / 2:g}"] \
        + res.notes
    res.wall_s += failed.wall_s
    res.info["lr_retries"] = res.info.get("lr_retries", 0) + 1
    return res


def suspect_probe(suspect: int | None, detection: DetectionResult | None, x_tune, y_tune,
                  x_held, y_held):
    """model -> success of the suspect class's reversed trigger on all trusted images, or None
    when there is no suspect or the detection kept no trigger for it.

    Why all trusted images: the probe ranks states of one run, and 500 images resolve a change
    of 0.01 better than the 100 held-out ones; the tuned copy trains on the rest only clean or
    with its own online triggers, never with this trigger.
    """
    from scanner.classifier import predict
    from scanner.ops.metrics import attack_success_rate

    if suspect is None or detection is None or detection.triggers is None \
            or suspect not in detection.triggers.classes:
        return None
    i = detection.triggers.classes.index(suspect)
    x = torch.cat([x_tune, x_held])
    y = torch.cat([y_tune, y_held]).cpu()
    xr = detection.triggers.apply(i, x.cpu()).clamp(0, 1)
    return lambda m: attack_success_rate(predict(m, xr), y, suspect)


def find_suspect(pivot, x_tune, y_tune, x_held, y_held, cfg: PivotalConfig,
                 detection: DetectionResult | None, device, progress) -> tuple:
    """(class, detection, note): the detection's top class, inverting here when none is given."""
    from scanner.detectors.inversion import InversionConfig
    from scanner.detectors.neural_cleanse import NCConfig, nc_detect

    source = (detection.extra.get("source") if detection is not None else None) \
        or "the given detection"
    if detection is None:
        with torch.no_grad():
            k = int(pivot(x_tune[:1].to(device)).shape[1])
        ncfg = NCConfig(InversionConfig(steps=cfg.focus_steps, seed=cfg.seed), statistic="log_mad")
        detection = nc_detect(pivot, x_tune, y_tune, x_held, y_held, k, ncfg, device=device,
                              progress=progress)
        source = f"a {cfg.focus_steps}-step mask inversion ({detection.wall_s:.0f} s)"
    c = detection.top_class
    why = (f"unlearning focused on class {c} ({cfg.focus:.0%} of triggered images; "
           f"{detection.method} score {detection.model_score:.2f} from {source})")
    return c, detection, why
