"""Where the CLI writes: Rich consoles for results and messages, progress lines on stderr."""

from __future__ import annotations

import os
import sys

from rich.console import Console


def console(stderr: bool = False) -> Console:
    """Rich console honouring NO_COLOR (https://no-color.org): no escape codes at all then.

    Off a terminal (CI logs, pipes) Rich would wrap every line at 80 columns and break a reason
    or a path in two; there lines are never wrapped and tables get a wide page.
    """
    plain = bool(os.environ.get("NO_COLOR"))
    tty = (sys.stderr if stderr else sys.stdout).isatty()
    wide = {} if tty else {"soft_wrap": True, "width": int(os.environ.get("COLUMNS") or 160)}
    return Console(stderr=stderr, no_color=plain, color_system=None if plain else "auto", **wide)


def stderr_console() -> Console:
    return console(stderr=True)


def eta_text(elapsed_s: float, done: int, remaining: int) -> str:
    """"eta 3m20s" from the rate so far; empty before any rate is known or once nothing remains.

    Why: a default scan of a ResNet-18-size model runs about 16 minutes on 2 cores (RESULTS 5),
    and a CI log that says only "step 40/200" does not tell anyone whether to wait.
    """
    if done <= 0 or remaining <= 0 or elapsed_s <= 0:
        return ""
    secs = round(elapsed_s / done * remaining)
    return f"eta {secs // 60}m{secs % 60:02d}s" if secs >= 60 else f"eta {secs}s"


class Progress:
    """Progress on stderr: a Rich bar on a terminal, plain periodic lines in CI logs."""

    def __init__(self, quiet: bool, clock=None) -> None:
        import time

        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.clock = clock or time.monotonic
        self.last: dict[str, float] = {}  # per phase: a parallel canary reports beside the scan
        self.start: dict[str, tuple[float, int]] = {}  # per phase: (time, step) of its first report
        self.seen: dict[str, int] = {}  # per phase: the last step reported to us

    def __call__(self, step: int, total: int, info: dict) -> None:
        if self.quiet:
            return
        now = self.clock()
        info = dict(info)
        phase = info.pop("phase", "")
        if total == 0:  # a phase without steps announces itself (loading, accuracy check)
            sys.stderr.write(f"  {phase}\n")
            sys.stderr.flush()
            return
        if phase not in self.start or step < self.seen.get(phase, 0):  # a phase (re)starts
            self.start[phase] = (now, step)
        self.seen[phase] = step
        if step != total and now - self.last.get(phase, 0.0) < (0.5 if self.tty else 10.0):
            return
        self.last[phase] = now
        extra = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in info.items() if not isinstance(v, (list, dict)))
        pct = f"{100 * step // max(1, total):3d}%"
        t0, s0 = self.start[phase]
        eta = eta_text(now - t0, step - s0, total - step)
        pct = f"{pct} {eta}" if eta else pct
        line = f"  {phase + ': ' if phase else ''}step {step}/{total} {pct} {extra}".rstrip()
        if self.tty:
            end = "\r" if step != total else "\n"
            sys.stderr.write(f"{line}\033[K{end}")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
