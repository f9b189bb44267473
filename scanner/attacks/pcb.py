"""Parameter-Controlled Backdoor (the paper's adaptive attack, Alg. 5): a training-process attack.

Why: Pivotal Tuning assumes a repaired model exists close to the poisoned one in parameter space.
PCB concentrates the backdoor in a random fraction ``p`` of the parameters: ordinary steps train
all parameters on clean data, and after every ordinary step one poisoned batch (patch trigger,
target label) updates only those sampled parameters. Its poison pool (``m`` samples) is therefore
kept out of the ordinary steps. The paper used an adversarial trigger; this uses the BadNets patch,
the trigger being orthogonal to what the attack tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scanner.attacks.badnets import BadNets, PatchConfig
from scanner.attacks.base import ATTACKS, PoisonedSet, StepContext, _check_float


@dataclass
class PCBConfig(PatchConfig):
    """p: fraction of parameter entries the poisoned steps may change."""

    m: int = 500
    p: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self, "p", lo=1e-9, hi=1.0)


@ATTACKS.register("pcb")
class PCB(BadNets):
    """Adaptive, training-process: poisoned steps change only a random fraction p of weights."""

    name = "pcb"
    Config = PCBConfig
    config: PCBConfig

    def _regular_rows(self, n: int, poisoned: Tensor) -> Tensor:
        keep = torch.ones(n, dtype=torch.bool)
        keep[poisoned] = False
        return torch.nonzero(keep).flatten()

    def training_hook(self, model: nn.Module, data: PoisonedSet, *, lr: float,
                      momentum: float) -> "PCBHook":
        return PCBHook(model, data.poisoned, self.config.p, self.rng("pcb-params"), lr, momentum,
                       regular=data.regular)


class PCBHook:
    """Runs one masked poisoned step after every ordinary step.

    A poisoned step's batch is half triggered pool samples (target label) and half clean samples
    (true labels): with triggered samples only, the sampled parameters (the head's bias among
    them) learn "always the target" and the model collapsed (CDA 0.10, ResNet-8, lr 0.1); the
    clean half makes them learn "target *if* the trigger is there", as poisoned data does.

    The poisoned steps use their own plain SGD (no weight decay, which would touch every
    parameter; no momentum: a second momentum on top of the trainer's, at the trainer's step
    size, kept a ResNet-8 from learning at all - CDA 0.15 after 3 epochs on 3 000 images, 0.33
    without it, 0.34 for the clean model) fed only masked gradients. BatchNorm running
    statistics are buffers, not parameters, but they would still absorb triggered batches; they
    are restored after each poisoned step so that only the sampled parameters carry the backdoor.
    """

    def __init__(self, model: nn.Module, pool: Tensor, p: float, generator: torch.Generator,
                 lr: float, momentum: float, regular: Tensor | None = None) -> None:
        self.model = model
        self.pool = pool
        self.regular = regular if regular is not None and len(regular) else None
        params = [q for q in model.parameters() if q.requires_grad]
        total = sum(q.numel() for q in params)
        flat = torch.zeros(total, dtype=torch.bool)
        flat[torch.randperm(total, generator=generator)[:max(1, round(p * total))]] = True
        self.masks = [m.view_as(q).to(q.device, q.dtype)
                      for m, q in zip(flat.split([q.numel() for q in params]), params)]
        self.params = params
        # Clipped: the masked steps run at the ordinary step size on every step, and unclipped
        # they diverged (loss 5e3 in the first epoch, NaN by the fourth, ResNet-8 at lr 0.1).
        self.max_grad_norm = 5.0
        self.opt = torch.optim.SGD(params, lr=lr)

    def after_step(self, ctx: StepContext) -> float:
        k = ctx.batch_size if self.regular is None else max(1, ctx.batch_size // 2)
        idx = self.pool[torch.randint(0, len(self.pool), (k,), generator=ctx.generator)]
        if self.regular is not None:
            clean = self.regular[torch.randint(0, len(self.regular), (ctx.batch_size - k,),
                                               generator=ctx.generator)]
            idx = torch.cat([idx, clean])
        x, y = ctx.make_batch(idx)
        saved = {k: b.detach().clone() for k, b in self.model.named_buffers()}
        for group in self.opt.param_groups:
            group["lr"] = ctx.lr
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        for q, m in zip(self.params, self.masks):
            if q.grad is not None:
                q.grad.mul_(m)
        torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            for k, b in self.model.named_buffers():
                b.copy_(saved[k])
        return loss.item()
