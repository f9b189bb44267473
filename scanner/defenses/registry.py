"""Repair methods by name: Pivotal Tuning and the paper's baselines behind one interface.

Every defense is ``run(pivot, x_tune, y_tune, x_held, y_held, cfg, *, device=None, monitor=None,
progress=None) -> RepairResult`` with a dataclass config that has ``for_device(device,
**overrides)`` (CPU-sized defaults; the paper's Table 5 scale on CUDA).

    cfg_cls, run = get_defense("fine_pruning")
    result = run(model, x_tune, y_tune, x_held, y_held, cfg_cls(prune_rate=0.9))
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import torch

from scanner.defenses.base import RepairResult
from scanner.defenses.fine_pruning import FinePruningConfig, fine_pruning
from scanner.defenses.nad import NADConfig, nad
from scanner.defenses.nc_repair import NCRepairConfig, nc_repair
from scanner.defenses.pivotal import PivotalConfig, pivotal_tuning
from scanner.defenses.weight_decay import WeightDecayConfig, weight_decay_finetune
from scanner.errors import InputError


class Defense(NamedTuple):
    """(config class, repair function); unpacks as a pair."""

    config: type
    run: Callable[..., RepairResult]

    @property
    def summary(self) -> str:
        return (self.run.__doc__ or "").strip().splitlines()[0] if self.run.__doc__ else ""


_DEFENSES: dict[str, Defense] = {
    "pivotal": Defense(PivotalConfig, pivotal_tuning),
    "fine_pruning": Defense(FinePruningConfig, fine_pruning),
    "nad": Defense(NADConfig, nad),
    "weight_decay": Defense(WeightDecayConfig, weight_decay_finetune),
    "nc_repair": Defense(NCRepairConfig, nc_repair),
}
_ALIASES = {"pivotal_tuning": "pivotal", "pt": "pivotal", "fp": "fine_pruning",
            "fineprune": "fine_pruning", "wd": "weight_decay", "nc": "nc_repair",
            "neural_cleanse": "nc_repair", "neural_attention_distillation": "nad"}


def list_defenses() -> list[str]:
    """Registered defense names, Pivotal Tuning first, then the baselines."""
    return list(_DEFENSES)


def _key(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    return _ALIASES.get(key, key)


def get_defense(name: str) -> Defense:
    """(config class, function) of a defense by name (aliases: fp, wd, nc, pt, ...)."""
    try:
        return _DEFENSES[_key(name)]
    except KeyError:
        raise InputError(f"unknown defense {name!r}",
                         hint="known: " + ", ".join(list_defenses())) from None


def canonical_name(name: str) -> str:
    """The registered name behind ``name`` or an alias ("pt" -> "pivotal")."""
    get_defense(name)  # raises for an unknown name
    return _key(name)


def make_config(name: str, device: torch.device | str | None = None, **overrides: Any):
    """A config for ``name``: ``for_device`` defaults (CPU unless told), then ``overrides``.

    ``None`` values are ignored; unknown keys raise :class:`InputError`.
    """
    return config_for(get_defense(name).config, name, device, **overrides)


# Set by their own flag or policy key (--seed, [repair] max_cda_drop, --max-cda-drop): a tuned
# knob table may not override them, or a policy could quietly loosen the accuracy budget.
NOT_TUNABLE = ("seed", "max_cda_drop")


def check_tunable(names, where: str) -> None:
    """Refuse knob tables (search grids, ``[repair.params]``) that name a non-tunable setting."""
    bad = sorted(set(names) & set(NOT_TUNABLE))
    if bad:
        raise InputError(f"{where}: {', '.join(bad)} cannot be set here",
                         hint="use --seed, and [repair] max_cda_drop or --max-cda-drop")


def config_for(cls, name: str, device: torch.device | str | None = None, **overrides: Any):
    """``cls.for_device`` with ``overrides``, refusing names the config does not have."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InputError(f"unknown parameter(s) for defense {name!r}: {', '.join(unknown)}",
                         hint="known: " + ", ".join(sorted(known)))
    return cls.for_device(torch.device(device or "cpu"), **overrides)


def run_defense(name: str, pivot, x_tune: torch.Tensor, y_tune: torch.Tensor,
                x_held: torch.Tensor, y_held: torch.Tensor, cfg=None, **kwargs: Any
                ) -> RepairResult:
    """Run defense ``name`` (config from ``make_config`` on the model's device when not given)."""
    d = get_defense(name)
    if cfg is None:
        dev = kwargs.get("device") or next(pivot.parameters()).device
        cfg = make_config(name, dev)
    elif not isinstance(cfg, d.config):
        raise InputError(f"defense {name!r} needs a {d.config.__name__}, got {type(cfg).__name__}")
    return d.run(pivot, x_tune, y_tune, x_held, y_held, cfg, **kwargs)
