"""Progress callbacks: ``progress(step, total, info)``, with ``info["phase"]`` naming the phase.

The jobs only label phases; the CLI decides how to show them.
"""

from __future__ import annotations

from typing import Callable

ProgressFn = Callable[[int, int, dict], None]


def phase(progress: ProgressFn | None, name: str) -> ProgressFn | None:
    """Label a phase's progress callbacks so a log line says what is running."""
    if progress is None:
        return None

    def report(step: int, total: int, info: dict) -> None:
        inner = info.get("phase")  # a phase inside a phase: "canary: pivotal tuning"
        progress(step, total, {**info, "phase": f"{name}: {inner}" if inner else name})
    return report


def announce(progress: ProgressFn | None, name: str) -> None:
    """A one-off line for a phase with no steps (loading, checking clean accuracy)."""
    if progress is not None:
        progress(0, 0, {"phase": name})
