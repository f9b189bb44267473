"""Adversarial clean-label attack (Turner et al. 2018, as the paper's authors re-implemented it).

The trigger is a targeted adversarial perturbation computed on a surrogate model the attacker
owns: PGD (L-inf, eps 8/255, 4 steps of 2/255) pushing each image towards one surrogate class.
Target-class training images carry it with their labels unchanged; at inference every test image
gets its own perturbation towards the same surrogate class. The victim thus learns "this
adversarial direction means target", which the paper found the most effective clean-label trigger
(ASR 0.98 on CIFAR-10) and one of the hardest to detect.

The authors used an ImageNet ResNet with an unrelated class (banister). Without downloads the
attacker here trains a small surrogate on the data it poisons (or takes one as ``surrogate``);
``adv_class`` then defaults to the target class, so the perturbation amplifies the surrogate's
target-class features. Expect some ASR on clean models too: targeted adversarial examples transfer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from scanner.attacks.base import ATTACKS, Attack, AttackConfig, Params, _check_float, _check_int
from scanner.attacks.functional import pgd_targeted
from scanner.errors import InputError


@dataclass
class AdvCleanLabelConfig(AttackConfig):
    """eps/step/steps: the PGD budget. adv_class: surrogate class to push towards (None: target).
    surrogate: the attacker's model (any module mapping N x C x H x W in [0,1] to logits); None
    trains ``surrogate_arch`` for ``surrogate_epochs`` on the data being poisoned.
    """

    m: int = 500
    eps: float = 8 / 255
    step: float = 2 / 255
    steps: int = 4
    adv_class: int | None = None
    surrogate: nn.Module | None = field(default=None, repr=False, compare=False)
    surrogate_arch: str = "resnet8"
    surrogate_epochs: int = 5
    chunk: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self, "eps", lo=0.0, hi=1.0)
        _check_float(self, "step", lo=0.0, hi=1.0)
        _check_int(self, "steps", lo=1)
        _check_int(self, "surrogate_epochs", lo=1)
        _check_int(self, "chunk", lo=1)
        if self.adv_class is not None:
            _check_int(self, "adv_class", lo=0)
        if self.surrogate is not None and not isinstance(self.surrogate, nn.Module):
            raise InputError("adv_clean_label: surrogate must be a torch.nn.Module")


@ATTACKS.register("adv_clean_label")
class AdvCleanLabel(Attack):
    """Clean-label: target-class images carry a PGD perturbation towards a surrogate's class."""

    name = "adv_clean_label"
    clean_label = True
    Config = AdvCleanLabelConfig
    config: AdvCleanLabelConfig

    def __init__(self, config: AdvCleanLabelConfig | None = None, **params) -> None:
        super().__init__(config, **params)
        self.surrogate: nn.Module | None = self.config.surrogate

    def poison(self, x: Tensor, y: Tensor):
        if self.surrogate is None:
            self.surrogate = self._train_surrogate(x, y)
        return super().poison(x, y)

    def _train_surrogate(self, x: Tensor, y: Tensor) -> nn.Module:
        """The attacker's own model, trained on the (clean) data it is about to poison."""
        from scanner.attacks.train import train_model

        model, _ = train_model(self.config.surrogate_arch, x, y, epochs=self.config.surrogate_epochs,
                               seed=self.config.seed, device=x.device,
                               num_classes=max(int(y.max()) + 1, self.config.target + 1))
        return model

    def _perturb(self, x: Tensor, purpose: str) -> Tensor:
        if self.surrogate is None:
            raise InputError("adv_clean_label needs a surrogate model before apply()",
                             hint="pass surrogate=..., or call poison() first (it trains one)")
        model = self.surrogate.to(x.device).eval()
        cls = self.config.target if self.config.adv_class is None else self.config.adv_class
        g = self.rng(purpose)
        cfg = self.config
        return torch.cat([pgd_targeted(model, xb, cls, cfg.eps, cfg.step, cfg.steps, g)
                          for xb in x.split(cfg.chunk)]) if len(x) else x.clone()

    def _prepare(self, x: Tensor, y: Tensor) -> Tensor:
        return self._perturb(x, "prepare")

    def _stamp(self, x: Tensor, params: Params) -> Tensor:
        """The perturbation is part of the stored image; augmentation acts on it, nothing to re-stamp."""
        return x

    def _apply(self, x: Tensor) -> Tensor:
        return self._perturb(x, "apply")
