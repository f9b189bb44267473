"""Compute budgets per device and level: how many steps each phase of a scan may take.

CPU budgets finish a ResNet-20-size scan in minutes on 2 cores; CUDA budgets are paper-scale
(2 000 repair steps at batch 128). Every number can be overridden from the command line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from scanner.errors import InputError


@dataclass(frozen=True)
class Budget:
    repair_steps: int
    repair_batch: int
    invert_steps: int
    invert_batch: int
    invert_chunk: int
    canary_steps: int

    def to_dict(self) -> dict:
        return asdict(self)


# canary_steps is a cap: the implant stops once it has taken (ASR 0.95). 300 was too tight: on
# the digits test model one of four canary seeds needed 375 steps (ASR 0.74 at step 300).
_BUDGETS = {
    ("cpu", "fast"): Budget(150, 64, 100, 24, 10, 500),
    ("cpu", "standard"): Budget(300, 64, 200, 32, 10, 500),
    ("cpu", "thorough"): Budget(800, 64, 400, 32, 10, 800),
    ("cuda", "fast"): Budget(500, 128, 200, 64, 100, 500),
    ("cuda", "standard"): Budget(2000, 128, 400, 128, 100, 500),
    ("cuda", "thorough"): Budget(4000, 128, 800, 128, 100, 800),
}
LEVELS = ("fast", "standard", "thorough")


def default_budget(device_type: str, level: str = "standard", **overrides) -> Budget:
    """The built-in budget for a device and level, with ``overrides`` (policy or flags) applied."""
    if level not in LEVELS:
        raise InputError(f"unknown budget {level!r}", hint="choose fast, standard or thorough")
    b = _BUDGETS[("cuda" if device_type == "cuda" else "cpu", level)]
    clean = {k: v for k, v in overrides.items() if v is not None}
    for k, v in clean.items():
        if not isinstance(v, int) or v < 1:
            raise InputError(f"budget override {k} must be a positive integer, got {v!r}")
    return replace(b, **clean)


get_budget = default_budget
