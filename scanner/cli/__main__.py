"""``python -m scanner.cli``."""

from scanner.cli import run

run()
