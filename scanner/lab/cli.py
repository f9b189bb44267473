"""``scan eval``: the lab's command line, one Typer app (:data:`eval_app`).

Importing this module registers every command: the games and the search, tables and plots, and
the benchmarks. ``scanner.cli`` adds the app as ``scan eval``.
"""

from scanner.lab import cli_bench, cli_games, cli_results, cli_search, cli_zoo  # noqa: F401
from scanner.lab.app import eval_app

__all__ = ["eval_app"]
