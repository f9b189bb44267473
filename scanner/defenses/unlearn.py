"""Online trigger unlearning: small mask + pattern triggers chased and unlearned during tuning.

Why: a data-poisoning backdoor is dormant on clean data. Cross-entropy on the trusted images, and
SLOL on their class centroids, barely touch the pathway a trigger uses, so fine-tuning on 1 % of
the data leaves it intact (real-trigger ASR stayed 0.94-1.0 in our probes, even when accuracy was
wrecked). Here one small mask + pattern trigger per class (Neural Cleanse's parametrisation, with
an L1 price on the mask) is kept alive across tuning steps: each step moves every sampled trigger
one Adam step towards making the *tuned* model predict its class, and the tuned model is then
trained to keep the true label on images carrying those triggers. A backdoor is exactly a small
trigger that works for every image, so it is what these triggers find first; the defender needs
to know neither the trigger nor the target.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scanner.ops.triggers import apply_mask_pattern, tanh_to_unit


@dataclass
class UnlearnConfig:
    frac: float = 0.5  # share of each batch that carries a trigger
    trigger_lr: float = 0.1
    mask_cost: float = 1e-2  # initial L1 price per mask pixel; adapted to hold ``target_fooled``
    target_fooled: float = 0.5  # the price rises when triggers fool more often, falls when less
    cost_step: float = 1.02
    mask_init: float = -2.0  # tanh-space start: mask ~ 0.02 everywhere


@contextmanager
def bn_stats_kept(model: nn.Module):
    """Forward passes inside leave BatchNorm running statistics as they were (momentum 0).

    Why: stamped images are not the clean distribution; letting them into the running statistics
    shifts the eval-mode model that the held-out accuracy (and the export) sees. Momentum 0 rather
    than restoring the buffers afterwards: autograd saved them for the backward pass.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum, m.num_batches_tracked.clone()
              if m.num_batches_tracked is not None else None) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


class OnlineTriggers(nn.Module):
    """K mask + pattern triggers in tanh space, optimised by their own Adam."""

    def __init__(self, num_classes: int, shape: tuple[int, int, int], cfg: UnlearnConfig,
                 generator: torch.Generator, device: torch.device) -> None:
        super().__init__()
        c, h, w = shape
        self.cfg = cfg
        self.mask_w = nn.Parameter(torch.full((num_classes, 1, h, w), cfg.mask_init, device=device))
        self.pattern_w = nn.Parameter(
            (torch.rand(num_classes, c, h, w, generator=generator) * 2 - 1).to(device))
        self.opt = torch.optim.Adam([self.mask_w, self.pattern_w], lr=cfg.trigger_lr,
                                    betas=(0.5, 0.9))
        self.cost = cfg.mask_cost
        self.fooled_avg = cfg.target_fooled

    def rows(self, w: Tensor, cls: Tensor) -> Tensor:
        """``w[cls]`` as a one-hot product. Why not indexing: the backward of ``w[cls]`` with
        repeated classes accumulates in thread order, which made a seeded repair differ from
        run to run on 2 CPU threads; a matrix product's reduction order is fixed."""
        onehot = F.one_hot(cls, w.shape[0]).to(w.dtype)
        return (onehot @ w.flatten(1)).view(len(cls), *w.shape[1:])

    def stamp(self, x: Tensor, cls: Tensor) -> Tensor:
        return apply_mask_pattern(x, tanh_to_unit(self.rows(self.mask_w, cls)),
                                  tanh_to_unit(self.rows(self.pattern_w, cls)))

    def chase(self, model: nn.Module, x: Tensor, cls: Tensor) -> float:
        """One step moving the triggers of ``cls`` towards fooling ``model`` into ``cls``.

        Gradients reach only the triggers; returns the share of ``x`` the triggers fooled. The
        mask price then moves (Neural Cleanse's idea, made smooth) so that the triggers keep
        fooling about ``target_fooled`` of the images: too cheap a mask turns triggers into
        large adversarial patches whose unlearning costs clean accuracy; too dear a mask finds
        nothing to unlearn. A scale-free rule is what lets one setting serve different models.
        """
        was_training = model.training
        model.eval()  # the triggers chase the model as it will be used, and BN stats stay clean
        try:
            logits = model(self.stamp(x, cls))
        finally:
            model.train(was_training)
        l1 = tanh_to_unit(self.rows(self.mask_w, cls)).flatten(1).sum(1)
        loss = F.cross_entropy(logits, cls) + self.cost * l1.mean()
        grads = torch.autograd.grad(loss, [self.mask_w, self.pattern_w])
        self.mask_w.grad, self.pattern_w.grad = grads
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        fooled = float((logits.argmax(1) == cls).float().mean())
        self.fooled_avg = 0.9 * self.fooled_avg + 0.1 * fooled
        if self.fooled_avg > self.cfg.target_fooled:
            self.cost *= self.cfg.cost_step
        else:
            self.cost /= self.cfg.cost_step
        return fooled


def random_other_class(y: Tensor, num_classes: int, generator: torch.Generator) -> Tensor:
    """A uniformly random class different from each label (on ``y``'s device)."""
    off = torch.randint(1, num_classes, y.shape, generator=generator).to(y.device)
    return (y + off) % num_classes


def trigger_classes(y: Tensor, num_classes: int, generator: torch.Generator,
                    focus_cls: int | None = None, focus: float = 0.0) -> Tensor:
    """The class whose trigger each image carries: a random other class, or with probability
    ``focus`` the suspect class ``focus_cls`` (never an image's own class).

    Why a focus: spread uniformly, the suspect class gets 1/(K-1) of the unlearning while the
    other classes' triggers, adversarial patches of a clean model, are unlearned at the price
    of clean accuracy. The extra draw happens only with a focus, so unfocused runs repeat.
    """
    cls = random_other_class(y, num_classes, generator)
    if focus_cls is None or focus <= 0:
        return cls
    take = (torch.rand(y.shape, generator=generator).to(y.device) < focus) & (y != focus_cls)
    return torch.where(take, torch.full_like(cls, focus_cls), cls)


def unlearning_loss(model: nn.Module, triggers: OnlineTriggers, x: Tensor, y: Tensor,
                    num_classes: int, generator: torch.Generator, *,
                    focus_cls: int | None = None, focus: float = 0.0) -> tuple[Tensor, float]:
    """Chase the triggers one step, then the CE of keeping true labels under them.

    Returns (loss, share of triggered images the triggers fooled before this step's update).
    """
    k = max(1, int(round(triggers.cfg.frac * len(y))))
    xs, ys = x[:k], y[:k]
    cls = trigger_classes(ys, num_classes, generator, focus_cls, focus)
    fooled = triggers.chase(model, xs, cls)
    with torch.no_grad():
        xt = triggers.stamp(xs, cls)
    with bn_stats_kept(model):
        logits = model(xt)
    return F.cross_entropy(logits, ys), fooled
