"""The Typer application: ``scan MODEL ...`` means ``scan detect MODEL ...``, and every failure
maps onto the documented exit codes.

Exit codes: 0 pass - 1 backdoor suspected - 2 usage/config/input error - 3 inconclusive or
runtime failure. Uncaught exceptions exit 3, never 1 (1 is a verdict).
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from scanner.cli.console import stderr_console
from scanner.errors import EXIT_INCONCLUSIVE, EXIT_INPUT, ScanError

DEFAULT_COMMAND = "detect"


class DefaultCommandGroup(TyperGroup):
    """``scan MODEL ...`` means ``scan detect MODEL ...`` once ``detect`` is registered."""

    def parse_args(self, ctx, args):  # type: ignore[override]
        if args and args[0] not in self.commands and not args[0].startswith("-") \
                and DEFAULT_COMMAND in self.commands:
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=DefaultCommandGroup, no_args_is_help=True, add_completion=False,
    help="Backdoor scanner for image classifiers (ONNX or safetensors + --arch).\n\n"
         "Exit codes: 0 pass, 1 backdoor suspected, 2 bad input, 3 inconclusive.",
    rich_markup_mode=None)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: map every failure onto the documented exit codes."""
    try:
        rv = app(args=argv, standalone_mode=False)
    except ScanError as exc:
        stderr_console().print(f"[bold red]error:[/] {exc.message}", highlight=False)
        if exc.hint:
            stderr_console().print(f"hint: {exc.hint}", highlight=False)
        return _exit(exc.exit_code)
    except typer.Abort:
        return _exit(EXIT_INCONCLUSIVE)
    except SystemExit as exc:  # click's own exits (usage errors are 2, --help is 0)
        return _exit(int(exc.code or 0))
    except Exception as exc:  # noqa: BLE001 - fail closed: never exit 1 on a crash
        if type(exc).__name__ in ("UsageError", "BadParameter", "NoSuchOption", "MissingParameter",
                                  "BadOptionUsage", "BadArgumentUsage", "ClickException"
                                  ) or _is_click_exception(exc):
            exc.show()  # type: ignore[attr-defined]
            return _exit(EXIT_INPUT)
        if type(exc).__name__ == "Exit":
            return _exit(int(getattr(exc, "exit_code", 0)))
        stderr_console().print(f"[bold red]internal error ({type(exc).__name__}):[/] {exc}",
                                highlight=False)
        stderr_console().print("the scan did not complete: verdict inconclusive (exit 3)")
        return _exit(EXIT_INCONCLUSIVE)
    return _exit(rv if isinstance(rv, int) else 0)


def _is_click_exception(exc: BaseException) -> bool:
    """Typer vendors click in recent releases; recognise either copy's usage errors."""
    return any(c.__name__ == "ClickException" for c in type(exc).__mro__)


def _exit(code: int) -> int:
    return code


def run() -> None:  # pragma: no cover - thin wrapper for the console script
    sys.exit(main())
