"""Atomic file writes: a reader (or a crash) never sees a half-written report or policy."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` so readers never see a partial file.

    The temporary file sits beside the target (same filesystem, so the rename is atomic) and is
    created with mode 0666 minus the umask, like a plain ``open``, unlike ``tempfile``'s 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


write_text_atomic = atomic_write


def _probe_dir(d: Path, what: str, target: Path) -> None:
    """Create and remove a file in ``d``: the only test of writability that also holds for root
    on a read-only mount (``os.access`` answers yes to root)."""
    from scanner.errors import InputError

    probe = d / f".scan-write-probe-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as e:
        raise InputError(f"{what} {target}: cannot write in {d} ({e.strerror or e})",
                         hint="choose a writable location") from None


def _nearest_existing(p: Path) -> Path:
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def check_writable_file(path: str | Path, what: str) -> None:
    """Fail (InputError, exit 2) before any work when ``path`` could not be written later."""
    from scanner.errors import InputError

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory; give a file name")
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise InputError(f"{what} {path}: {base} is a file, not a directory")
    _probe_dir(base, what, path)


def check_writable_dir(path: str | Path, what: str) -> None:
    """As :func:`check_writable_file`, for a directory that may not exist yet."""
    from scanner.errors import InputError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path} is a file, not a directory")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise InputError(f"{what} {path}: {base} is a file, not a directory")
    _probe_dir(base, what, path)
