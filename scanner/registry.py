"""One way to choose things by name: a registry filled by a decorator (as timm's ``register_model``).

Detectors, repair defenses, attacks and architectures each have one :class:`Registry`. A name
means the same thing in the policy, on the command line and in every report, because all of
them look it up here and nowhere else.

    DETECTORS = Registry("detector")

    @DETECTORS.register("mask", summary="reversed mask+pattern triggers, log-MAD outlier test")
    class MaskDetector: ...

    DETECTORS.get("mask")        # the registered object
    DETECTORS.names()            # by ``rank`` where given, else in registration order
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from scanner.errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its name and a one-line summary (for listings)."""

    name: str
    obj: T
    summary: str = ""
    meta: dict = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> object, filled at import time by :meth:`register`.

    ``loader`` imports the modules that register the built-in entries, so a lookup never depends
    on which modules a caller happened to import first.
    """

    def __init__(self, kind: str, loader: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._loader = loader
        self._loaded = loader is None

    def register(self, name: str, *, summary: str = "", **meta: Any) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` (a name is taken once)."""
        key = _key(name)

        def deco(obj: T) -> T:
            if key in self._entries:
                raise RuntimeError(f"{self.kind} name {key!r} registered twice")
            doc = summary or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
            self._entries[key] = Entry(key, obj, doc, dict(meta))
            return obj
        return deco

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            if self._loader is not None:
                self._loader()

    def entry(self, name: str) -> Entry[T]:
        """The entry for ``name`` (case and ``-``/``_`` insensitive); InputError naming the known."""
        self._load()
        try:
            return self._entries[_key(name)]
        except KeyError:
            raise InputError(f"unknown {self.kind} {name!r}",
                             hint="known: " + ", ".join(self.names())) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        return [e.name for e in self]

    def __contains__(self, name: object) -> bool:
        self._load()
        return isinstance(name, str) and _key(name) in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        """Entries by their ``rank`` meta (lowest first; the sort is stable, so entries without
        one keep registration order): a listing must not depend on which module loaded first."""
        self._load()
        return iter(sorted(self._entries.values(), key=lambda e: e.meta.get("rank", 0)))


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")
