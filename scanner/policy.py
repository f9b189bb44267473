"""Gate policy: thresholds and switches read from TOML (``rules/default.toml`` is the default).

Strict on purpose: an unknown key or a bad value is an input error naming the key, because a
typo in a CI gate's config silently weakening it is worse than a failed build.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from scanner.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

METHODS = ("mask", "nc", "cti")
DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "rules" / "default.toml"


@dataclass
class GatePolicy:
    method: str = "mask"
    cti_threshold: float = 0.5
    nc_threshold: float = 2.0
    mask_threshold: float = 3.5
    min_clean_accuracy: float = 0.3
    min_per_class: int = 5
    holdout: float = 0.2
    canary: bool = True


@dataclass
class RepairPolicy:
    max_cda_drop: float = 0.02


@dataclass
class Policy:
    gate: GatePolicy = field(default_factory=GatePolicy)
    repair: RepairPolicy = field(default_factory=RepairPolicy)
    source: str = "built-in defaults"


_RANGES = {
    "gate.cti_threshold": (-1.0, 1.0), "gate.nc_threshold": (0.0, 100.0), "gate.mask_threshold": (0.0, 100.0), "gate.min_clean_accuracy": (0.0, 1.0),
    "gate.min_per_class": (0, 100_000), "gate.holdout": (0.01, 0.9),
    "repair.max_cda_drop": (0.0, 1.0),
}


def _section(cls, data: dict, name: str, src: str):
    known = {f.name: f for f in fields(cls)}
    out = cls()
    for k, v in data.items():
        key = f"{name}.{k}"
        if k not in known:
            raise InputError(f"{src}: unknown key {key!r}", hint="known: " + ", ".join(
                f"{name}.{n}" for n in known))
        want = type(getattr(out, k))
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, want) or (want is int and isinstance(v, bool)):
            raise InputError(f"{src}: {key} must be {want.__name__}, got {v!r}")
        if key == "gate.method" and v not in METHODS:
            raise InputError(f"{src}: gate.method must be one of {', '.join(METHODS)}, got {v!r}")
        lo, hi = _RANGES.get(key, (None, None))
        if lo is not None and not lo <= v <= hi:
            raise InputError(f"{src}: {key} = {v!r} is outside [{lo}, {hi}]")
        setattr(out, k, v)
    return out


def policy_from_dict(data: dict, src: str = "config") -> Policy:
    sections = {"gate": GatePolicy, "repair": RepairPolicy}
    unknown = [k for k in data if k not in sections]
    if unknown:
        raise InputError(f"{src}: unknown section(s) {', '.join(unknown)}",
                         hint="known: " + ", ".join(sections))
    return Policy(**{name: _section(cls, data.get(name, {}), name, src)
                     for name, cls in sections.items()}, source=src)


def load_policy(path: str | Path | None = None) -> Policy:
    """Read a policy TOML (``None``: the shipped default)."""
    p = Path(path) if path is not None else DEFAULT_POLICY
    if not p.is_file():
        if path is None:
            return Policy()
        raise InputError(f"config file not found: {p}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{p}: invalid TOML ({exc})") from exc
    return policy_from_dict(data, str(p))
