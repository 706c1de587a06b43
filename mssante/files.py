"""Crash-safe file writes, for every small file a running node reads.

Configuration, keys and CRLs are read by running servers: a half-written file
would either lock peers out or leak a truncated key, so every write goes
through a temp file in the same directory, is fsynced, then renamed over the
target, and the directory is fsynced so the rename itself survives a crash.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "fsync_directory"]


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> Path:
    """Replace ``path`` with ``data`` atomically and return the path.

    ``mode`` is applied to the temp file before any byte is written, so a
    private key is never readable by others, not even for an instant.
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_directory(target.parent)
    return target


def fsync_directory(directory: Path) -> None:
    """Persist the rename itself; without it a crash may resurrect the old file."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
