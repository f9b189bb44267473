"""Error types that carry the CLI exit code they map to.

Why: the CI gate must never confuse "could not scan" with "backdoor found". Every failure a user
can cause is an :class:`InputError` (exit 2); every failure of the scan itself is an
:class:`InconclusiveError` (exit 3). Exit 1 is reserved for a verdict.
"""

from __future__ import annotations

EXIT_PASS = 0
EXIT_BACKDOOR = 1
EXIT_INPUT = 2
EXIT_INCONCLUSIVE = 3


class ScanError(Exception):
    """Base class: a failure with a user-facing message and an exit code."""

    exit_code: int = EXIT_INCONCLUSIVE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nHint: {self.hint}"


class InputError(ScanError):
    """Bad input from the user: model file, trusted data, flags or config (exit 2)."""

    exit_code = EXIT_INPUT


class InconclusiveError(ScanError):
    """The scan could not be completed or trusted (exit 3): fail closed."""

    exit_code = EXIT_INCONCLUSIVE


class ModelImportError(InconclusiveError):
    """The model could not be imported faithfully (unsupported op, numeric mismatch)."""
