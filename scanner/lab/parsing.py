"""Command-line value parsing for ``scan eval``: lists, trusted sizes, attack grids, knob grids.

Why apart from the commands: the games and the search validate the same inputs when called from
Python, and every bad value must be an :class:`InputError` (exit 2) that names the flag.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from scanner.errors import InputError


def parse_list(text: str, conv=str, name: str = "list") -> list:
    """``"a,b,c"`` -> ``[conv("a"), ...]``; an empty list or an unreadable item is refused."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise InputError(f"{name}: empty list")
    out = []
    for t in items:
        try:
            out.append(conv(t))
        except ValueError:
            raise InputError(f"{name}: cannot read {t!r} as {getattr(conv, '__name__', conv)}") from None
    return out


def parse_r(text: str) -> list[float]:
    """``0.01,0.025,0.05`` (fractions of the training set) or ``500`` (image counts)."""
    rs = parse_list(text, float, "--r")
    for r in rs:
        if not r > 0 or (r >= 1 and r != int(r)):
            raise InputError(f"--r: {r:g} is neither a fraction in (0, 1) nor a whole number of images")
    return rs


def attack_grid(attacks: Iterable[str], ms: Sequence[int] | None, rate: float,
                train_size: int) -> list[tuple[str, int]]:
    """(attack, m) pairs: every attack with every m (default: ``rate`` × training-set size)."""
    from scanner.attacks import list_attacks

    known = list_attacks()
    out = []
    for a in attacks:
        key = a.lower().replace("-", "_")
        if key not in known:
            raise InputError(f"unknown attack {a!r}", hint="known: " + ", ".join(known))
        for m in (ms or [max(1, round(rate * train_size))]):
            if m < 1:
                raise InputError(f"--m must be positive, got {m}")
            out.append((key, int(m)))
    return out


def parse_grid(items: Sequence[str]) -> dict[str, list]:
    """``["lr=1e-3,1e-2", "lambda_p=2000,20000"]`` -> ``{"lr": [0.001, 0.01], ...}``."""
    out: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--grid expects NAME=V1,V2,..., got {item!r}")
        name, vals = (t.strip() for t in item.split("=", 1))
        values = [parse_scalar(v) for v in vals.split(",") if v.strip()]
        if not name or not values:
            raise InputError(f"--grid expects NAME=V1,V2,..., got {item!r}")
        out[name] = values
    return out


def parse_scalar(v: str):
    """An int, a float, true/false, none, or else the text itself."""
    v = v.strip()
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            continue
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    return v
