"""One job on a background thread beside the caller, with the CPU threads split between them.

Why threads and not processes: the job needs the caller's in-memory model and data, and torch
releases the GIL inside its kernels, so two optimisation loops on one thread each overlap almost
completely. Why split the threads: two loops that each ask for every core oversubscribe the CPU
and run slower together than one after the other.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Generic, TypeVar

import torch

T = TypeVar("T")


class Cancelled(Exception):
    """Raised inside a background job by its ``check`` once the caller no longer needs it."""


class Background(Generic[T]):
    """Run ``fn(check)`` on a thread; ``check()`` raises ``Cancelled`` after ``cancel()``.

    ``threads``: torch intra-op threads for the job (the caller sets its own, see
    ``split_threads``). Exceptions from the job re-raise in ``result()``.
    """

    def __init__(self, fn: Callable[[Callable[[], None]], T], threads: int) -> None:
        self._fn, self._threads = fn, threads
        self._stop = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="scanner-background", daemon=True)

    def _check(self) -> None:
        if self._stop.is_set():
            raise Cancelled()

    def _run(self) -> None:
        torch.set_num_threads(self._threads)  # this thread's OpenMP team size, set before work
        try:
            self._value = self._fn(self._check)
        except BaseException as e:  # handed to the caller by result()
            self._error = e

    def start(self) -> "Background[T]":
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop at its next ``check`` and wait for it."""
        self._stop.set()
        self._thread.join()

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


@contextlib.contextmanager
def split_threads(parts: int = 2):
    """Give the caller ``1/parts`` of torch's intra-op threads; yields the share for each job."""
    before = torch.get_num_threads()
    share = max(1, before // parts)
    torch.set_num_threads(share)
    try:
        yield share
    finally:
        torch.set_num_threads(before)
