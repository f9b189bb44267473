"""Batched trigger inversion: one engine behind Neural Cleanse and Calibrated Trigger Inversion.

K class-triggers are optimised as one problem: each step stamps every trigger on the same batch of
trusted images (a K x B batch), so the K problems share forward passes but stay independent
(each trigger only sees its own rows; the loss is a sum of per-class means). Classes are done in
chunks; the batch sequence is re-seeded for every chunk, so the result does not depend on the
chunk size (up to floating-point reduction order). Model parameters are frozen: gradients flow to
the triggers only.

Two parametrisations:
- ``mask``: Neural Cleanse's x' = (1 - m) x + m p, m and p through tanh, an L1 cost on m with
  NC's adaptive cost schedule (so a trigger must be small to count);
- ``additive``: x' = clamp(x + eps * tanh(w)), an L-inf bounded version of the paper's trigger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from scanner.ops.precision import exact
from scanner.ops.triggers import apply_additive, apply_mask_pattern, tanh_to_unit

# per-row loss: (x_triggered [R,C,H,W], target class per row [R], true label per row [R]) -> [R]
RowLoss = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]
ProgressFn = Callable[[int, int, dict], None]


@dataclass
class InversionConfig:
    form: str = "mask"  # "mask" | "additive"
    steps: int = 200
    batch_size: int = 32
    lr: float = 0.1
    betas: tuple[float, float] = (0.5, 0.9)
    eps: float = 0.1  # additive: L-inf bound
    init_cost: float = 1e-3  # mask: initial L1 weight
    cost_multiplier: float = 2.0
    cost_patience: int = 5
    asr_threshold: float = 0.99
    flip: bool = True
    chunk: int = 10
    seed: int = 0


@dataclass
class TriggerSet:
    """Reversed triggers for a list of classes (mask/pattern or additive delta)."""

    classes: list[int]
    form: str
    mask: Tensor | None = None  # [K,1,H,W] in [0,1]
    pattern: Tensor | None = None  # [K,C,H,W] in [0,1]
    delta: Tensor | None = None  # [K,C,H,W]
    final_cost: list[float] = field(default_factory=list)

    def apply(self, i: int, x: Tensor) -> Tensor:
        if self.form == "mask":
            return apply_mask_pattern(x, self.mask[i].to(x.device), self.pattern[i].to(x.device))
        return apply_additive(x, self.delta[i].to(x.device))

    def mask_l1(self) -> list[float]:
        if self.form == "mask":
            return [float(m.sum()) for m in self.mask]
        return [float(d.abs().sum()) for d in self.delta]

    def image(self, i: int) -> Tensor:
        """A [C,H,W] picture of trigger i for reports (mask*pattern, or the centred delta)."""
        if self.form == "mask":
            return (self.mask[i] * self.pattern[i]).clamp(0, 1)
        d = self.delta[i]
        return (d / (2 * d.abs().max().clamp_min(1e-8)) + 0.5).clamp(0, 1)


def _init_params(form: str, k: int, shape: tuple[int, int, int], cfg: InversionConfig,
                 g: torch.Generator) -> list[Tensor]:
    c, h, w = shape
    if form == "mask":
        # NC starts from random mask/pattern; atanh-space init of U(0,1) images
        m = torch.rand(k, 1, h, w, generator=g).mul(0.98).add(0.01)
        p = torch.rand(k, c, h, w, generator=g).mul(0.98).add(0.01)
        return [torch.atanh(2 * m - 1), torch.atanh(2 * p - 1)]
    d = torch.rand(k, c, h, w, generator=g) * min(0.01, cfg.eps * 0.99)  # paper: U(0, 0.01)
    return [torch.atanh(d / cfg.eps)]


def invert_triggers(row_loss: RowLoss, x: Tensor, y: Tensor, classes: list[int],
                    cfg: InversionConfig, *, device: torch.device | None = None,
                    progress: ProgressFn | None = None) -> TriggerSet:
    """Optimise one trigger per class in ``classes`` against ``row_loss`` on images with y != c."""
    device = device or x.device
    shape = tuple(x.shape[1:])
    masks, patterns, deltas, costs = [], [], [], []
    total_chunks = math.ceil(len(classes) / cfg.chunk)
    for ci in range(total_chunks):
        chunk = classes[ci * cfg.chunk:(ci + 1) * cfg.chunk]
        k = len(chunk)
        g = torch.Generator().manual_seed(cfg.seed)  # same batches for every chunk
        params = []
        for j, c in enumerate(chunk):  # per-class init stream: independent of chunking
            gc = torch.Generator().manual_seed(cfg.seed * 1_000_003 + int(c))
            params.append(_init_params(cfg.form, 1, shape, cfg, gc))
        params = [torch.cat([p[i] for p in params]).to(device).requires_grad_(True)
                  for i in range(len(params[0]))]
        opt = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas)
        cls_t = torch.tensor(chunk, device=device)
        cost = torch.full((k,), cfg.init_cost, device=device)
        up = torch.zeros(k, device=device)
        down = torch.zeros(k, device=device)
        for step in range(cfg.steps):
            idx = torch.randint(0, len(y), (cfg.batch_size,), generator=g)
            xb, yb = x[idx].to(device), y[idx].to(device)
            if cfg.flip:
                flip = (torch.rand(len(idx), generator=g) < 0.5).to(device)
                xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            b = xb.shape[0]
            if cfg.form == "mask":
                m = tanh_to_unit(params[0])
                p = tanh_to_unit(params[1])
                xk = apply_mask_pattern(xb[None], m[:, None], p[:, None])
            else:
                xk = apply_additive(xb[None], cfg.eps * torch.tanh(params[0])[:, None])
            c_rows = cls_t.repeat_interleave(b)
            y_rows = yb.repeat(k)
            loss_rows, hit_rows = row_loss(xk.reshape(k * b, *shape), c_rows, y_rows)
            valid = (y_rows != c_rows).float().view(k, b)
            per_class = (loss_rows.view(k, b) * valid).sum(1) / valid.sum(1).clamp_min(1)
            asr = (hit_rows.float().view(k, b) * valid).sum(1) / valid.sum(1).clamp_min(1)
            if cfg.form == "mask":
                per_class = per_class + cost * m.view(k, -1).sum(1)
            opt.zero_grad(set_to_none=True)
            per_class.sum().backward()
            opt.step()
            if cfg.form == "mask":
                with torch.no_grad():  # Neural Cleanse's cost schedule, per class
                    ok = asr >= cfg.asr_threshold
                    up = torch.where(ok, up + 1, torch.zeros_like(up))
                    down = torch.where(ok, torch.zeros_like(down), down + 1)
                    raise_ = up >= cfg.cost_patience
                    lower = down >= cfg.cost_patience
                    cost = torch.where(raise_, cost * cfg.cost_multiplier, cost)
                    cost = torch.where(lower, cost / cfg.cost_multiplier ** 1.5, cost)
                    up = torch.where(raise_, torch.zeros_like(up), up)
                    down = torch.where(lower, torch.zeros_like(down), down)
            if progress and (step + 1) % 10 == 0:
                progress(ci * cfg.steps + step + 1, total_chunks * cfg.steps,
                         {"classes": chunk, "mean_asr": float(asr.mean())})
        with torch.no_grad():
            if cfg.form == "mask":
                masks.append(tanh_to_unit(params[0]).cpu())
                patterns.append(tanh_to_unit(params[1]).cpu())
            else:
                deltas.append((cfg.eps * torch.tanh(params[0])).cpu())
            costs.extend(cost.cpu().tolist())
    if cfg.form == "mask":
        return TriggerSet(classes, "mask", mask=torch.cat(masks), pattern=torch.cat(patterns),
                          final_cost=costs)
    return TriggerSet(classes, "additive", delta=torch.cat(deltas), final_cost=costs)


def frozen(*models: torch.nn.Module):
    """Context manager: eval mode and no parameter gradients for the given models."""
    import contextlib

    @contextlib.contextmanager
    def _ctx():
        saved = [[p.requires_grad for p in mdl.parameters()] for mdl in models]
        modes = [mdl.training for mdl in models]
        for mdl in models:
            mdl.eval()
            for p in mdl.parameters():
                p.requires_grad_(False)
        try:
            yield
        finally:
            for mdl, flags, mode in zip(models, saved, modes):
                for p, f in zip(mdl.parameters(), flags):
                    p.requires_grad_(f)
                mdl.train(mode)
    return _ctx()


@torch.no_grad()
def trigger_success(model: torch.nn.Module, triggers: TriggerSet, x: Tensor, y: Tensor,
                    batch_size: int = 256) -> list[float]:
    """Per trigger: fraction of held-out images with y != c that ``model`` classifies as c.

    Float32 even inside bf16 loops: these rates are the scores.
    """
    dev = next(model.parameters()).device
    with exact(dev):
        return _trigger_success(model, triggers, x, y, batch_size, dev)


def _trigger_success(model, triggers: TriggerSet, x: Tensor, y: Tensor, batch_size: int,
                     dev: torch.device) -> list[float]:
    out = []
    for i, c in enumerate(triggers.classes):
        keep = y != c
        xs = x[keep]
        if len(xs) == 0:
            out.append(float("nan"))
            continue
        hits = 0
        for j in range(0, len(xs), batch_size):
            xb = triggers.apply(i, xs[j:j + batch_size].to(dev))
            hits += int((model(xb).argmax(-1) == c).sum())
        out.append(hits / len(xs))
    return out


def ce_rows(logits: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(logits, target, reduction="none")
