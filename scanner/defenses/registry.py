"""Repair methods by name: Pivotal Tuning and the paper's baselines behind one interface.

Every defense is ``run(pivot, split, cfg, *, device=None, monitor=None,
progress=None) -> RepairResult`` with a dataclass config that has ``for_device(device,
**overrides)`` (CPU-sized defaults; the paper's Table 5 scale on CUDA). A defense module
registers its repair function with ``@DEFENSES.register(name, config=ConfigClass, rank=n)``;
``rank`` orders listings (Pivotal Tuning first, then the baselines), whichever module happened
to be imported first.

    cfg_cls, run = get_defense("fine_pruning")
    result = run(model, split, cfg_cls(prune_rate=0.9))  # split: a TrustedSplit
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, NamedTuple

import torch

from scanner.defenses.base import RepairResult
from scanner.errors import InputError
from scanner.io.trusted_split import TrustedSplit
from scanner.registry import Registry

# The modules whose import registers the built-in defenses.
_BUILTIN = ("pivotal", "fine_pruning", "nad", "weight_decay", "nc_repair")


def _load_builtin() -> None:
    for module in _BUILTIN:
        importlib.import_module(f"scanner.defenses.{module}")


DEFENSES: Registry[Callable[..., RepairResult]] = Registry("defense", loader=_load_builtin)


class Defense(NamedTuple):
    """(config class, repair function); unpacks as a pair."""

    config: type
    run: Callable[..., RepairResult]

    @property
    def summary(self) -> str:
        return (self.run.__doc__ or "").strip().splitlines()[0] if self.run.__doc__ else ""


def list_defenses() -> list[str]:
    """Registered defense names, Pivotal Tuning first, then the baselines."""
    return DEFENSES.names()


def _entry(name: str):
    # The hint lists the names in listing order, not in whichever order the modules registered.
    if name not in DEFENSES:
        raise InputError(f"unknown defense {name!r}", hint="known: " + ", ".join(list_defenses()))
    return DEFENSES.entry(name)


def get_defense(name: str) -> Defense:
    """(config class, function) of a defense by name; InputError naming the known ones."""
    entry = _entry(name)
    return Defense(entry.meta["config"], entry.obj)


def canonical_name(name: str) -> str:
    """The registered spelling of ``name`` ("Fine-Pruning" -> "fine_pruning")."""
    return _entry(name).name


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


def run_by_name(name: str, pivot, split: TrustedSplit, cfg=None, **kwargs: Any) -> RepairResult:
    """Run defense ``name`` (config from ``make_config`` on the model's device when not given)."""
    d = get_defense(name)
    if cfg is None:
        dev = kwargs.get("device") or next(pivot.parameters()).device
        cfg = make_config(name, dev)
    elif not isinstance(cfg, d.config):
        raise InputError(f"defense {name!r} needs a {d.config.__name__}, got {type(cfg).__name__}")
    return d.run(pivot, split, cfg, **kwargs)
