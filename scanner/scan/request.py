"""One frozen request per job, built once from the policy and the flags.

Why: a scan's decisions (detector, threshold, budget, canary, repair method, accuracy budget)
come from three places: built-in defaults, the policy file and the command line. If every layer
merged them on its own, two reports of the same scan could disagree about what ran. Here is the
only place that knows the precedence (flag over policy over built-in default); everything
downstream reads the :class:`ScanRequest` and nothing mutates it. The report records it as its
``settings`` block.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import torch

from scanner.budget import Budget, default_budget
from scanner.errors import InputError

CANARY_MODES = ("auto", "parallel", "sequential")
#: each detector's policy key for its threshold (``gate.<key>``)
THRESHOLD_KEYS = {"mask": "mask_threshold", "nc": "nc_threshold", "cti": "cti_threshold",
                  "ratio": "ratio_threshold"}


@dataclass(frozen=True)
class SpecOverrides:
    """What the user said about the model's input, where the graph does not say it."""

    layout: str | None = None
    size: tuple[int, int] | None = None
    value_range: tuple[float, float] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class ScanRequest:
    """Everything besides the model and data files that decides a job, resolved."""

    device: str = "cpu"
    seed: int = 0
    budget_level: str = "standard"
    budget: Budget = field(default_factory=lambda: default_budget("cpu", "standard"))
    method: str = "mask"
    thresholds: Mapping[str, float] = field(default_factory=lambda: MappingProxyType(
        {"mask": 3.5, "nc": 2.0, "cti": 3.5, "ratio": 3.5}))
    canary: bool = True
    canary_scope: str = "all"
    canary_mode: str = "auto"
    precision: str = "fp32"  # resolved: "fp32" | "bf16"
    max_cda_drop: float = 0.02
    defense: str = "pivotal"
    repair_params: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    min_per_class: int = 5
    min_clean_accuracy: float = 0.3
    holdout: float = 0.2
    arch: str | None = None
    labels_file: str | None = None
    spec: SpecOverrides = field(default_factory=SpecOverrides)
    policy_source: str = "built-in defaults"

    @property
    def threshold(self) -> float:
        """The threshold of this request's detector: the one place the choice is made."""
        return self.thresholds[self.method]

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def with_method(self, method: str) -> "ScanRequest":
        """The same request judged by another detector (a repair's re-scan)."""
        return dataclasses.replace(self, method=method)

    def to_dict(self) -> dict:
        """The report's ``settings`` block (flat threshold keys, as the report schema has them)."""
        d = {"device": self.device, "seed": self.seed, "budget_level": self.budget_level,
             "budget": self.budget.to_dict(), "method": self.method,
             "canary": self.canary, "canary_scope": self.canary_scope,
             "canary_mode": self.canary_mode, "precision": self.precision,
             "max_cda_drop": self.max_cda_drop, "defense": self.defense,
             "repair_params": dict(self.repair_params), "min_per_class": self.min_per_class,
             "min_clean_accuracy": self.min_clean_accuracy, "holdout": self.holdout,
             "policy_source": self.policy_source}
        d.update({THRESHOLD_KEYS[m]: v for m, v in self.thresholds.items()})
        return d


def build_request(policy=None, *, device: torch.device | str = "cpu", seed: int = 0,
                  budget_level: str = "standard", budget_overrides: dict | None = None,
                  method: str | None = None, canary: bool = True, canary_mode: str = "auto",
                  precision: str = "auto", max_cda_drop: float | None = None,
                  defense: str | None = None, min_per_class: int | None = None,
                  arch: str | None = None,
                  labels_file: str | Path | None = None,
                  spec: SpecOverrides | dict | None = None) -> ScanRequest:
    """Resolve flags (``None``: not given) against the policy and the built-in defaults.

    Every value is checked here, before any model is loaded, so a bad flag costs no time.
    """
    from scanner.ops.precision import PRECISIONS, resolve_precision
    from scanner.policy import METHODS, Policy

    policy = policy if policy is not None else Policy()
    if method is not None and method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if canary_mode not in CANARY_MODES:
        raise InputError(f"--canary-mode must be one of {', '.join(CANARY_MODES)}, "
                         f"got {canary_mode!r}")
    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if max_cda_drop is not None and not 0.0 <= max_cda_drop <= 1.0:
        raise InputError(f"--max-cda-drop must be a fraction in [0, 1], got {max_cda_drop}")
    defense = _defense_name(defense or policy.repair.defense)
    device = torch.device(device)
    gate = policy.gate
    if isinstance(spec, dict):
        spec = SpecOverrides(**spec)
    return ScanRequest(
        device=str(device), seed=seed, budget_level=budget_level,
        budget=policy.budget_for(device.type, budget_level, **(budget_overrides or {})),
        method=method or gate.method,
        thresholds=MappingProxyType({m: getattr(gate, k) for m, k in THRESHOLD_KEYS.items()}),
        canary=canary and gate.canary, canary_scope=gate.canary_scope, canary_mode=canary_mode,
        precision=resolve_precision(precision, device),
        max_cda_drop=policy.repair.max_cda_drop if max_cda_drop is None else max_cda_drop,
        defense=defense, repair_params=MappingProxyType(dict(policy.repair_params)),
        min_per_class=gate.min_per_class if min_per_class is None else min_per_class,
        min_clean_accuracy=gate.min_clean_accuracy,
        holdout=gate.holdout, arch=arch,
        labels_file=None if labels_file is None else str(labels_file),
        spec=spec or SpecOverrides(), policy_source=policy.source)


def _defense_name(name: str) -> str:
    from scanner.defenses.registry import canonical_name, list_defenses

    if name not in list_defenses():
        raise InputError(f"--defense must be one of {', '.join(list_defenses())}, got {name!r}")
    return canonical_name(name)
