"""Attack generators and the poisoned-model trainer (the scanner's self-test material).

``get_attack(name, **params)`` builds an attack; ``attack.poison(x, y)`` returns a
:class:`PoisonedSet`; ``attack.apply(x)`` stamps the inference-time trigger;
``train_model`` trains (poisoned) models with the trigger re-stamped after augmentation.
"""

from scanner.attacks.base import (Attack, AttackConfig, PoisonedSet, attack_class, get_attack,
                                  list_attacks)
from scanner.attacks.badnets import BadNets, CBadNets
from scanner.attacks.adaptive import AdaptiveBlend, AdaptivePatch
from scanner.attacks.adv_clean_label import AdvCleanLabel
from scanner.attacks.refool import Refool
from scanner.attacks.wanet import WaNet
from scanner.attacks.tsb import TSB
from scanner.attacks.pcb import PCB
from scanner.attacks.wild import AdditiveSquare, AllToAll, Blend, GridPatch, L0Spread, L2Spread
from scanner.attacks.train import TrainHistory, attack_success_rate, evaluate, train_model

__all__ = [
    "Attack", "AttackConfig", "PoisonedSet", "get_attack", "list_attacks", "attack_class",
    "BadNets", "CBadNets", "AdaptivePatch", "AdaptiveBlend", "AdvCleanLabel", "Refool", "WaNet",
    "TSB", "PCB", "GridPatch", "AdditiveSquare", "Blend", "L0Spread", "L2Spread", "AllToAll",
    "train_model", "evaluate", "attack_success_rate", "TrainHistory",
]
