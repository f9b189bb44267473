"""``scan`` command line: parse flags into one request, call :mod:`scanner.scan`, render, exit.

Commands register themselves on :data:`scanner.cli.app.app` when their module is imported;
rendering lives in :mod:`scanner.report`, computing in :mod:`scanner.scan`.
"""

from scanner.cli import attack_cmd, scan_cmds, tools_cmds  # noqa: F401  (register commands)
from scanner.cli.app import DEFAULT_COMMAND, app, main, run
from scanner.cli.console import Progress, eta_text


def _register_lab() -> None:
    from scanner.lab.cli import eval_app

    app.add_typer(eval_app, name="eval",
                  help="Evaluation harness: robustness and detectability games, self-poisoning "
                       "hyper-parameter search, paper-shaped tables and plots.")


_register_lab()

__all__ = ["DEFAULT_COMMAND", "Progress", "app", "eta_text", "main", "run"]
