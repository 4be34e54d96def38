"""Files written so that a crash at any instant leaves the old version or the new one, never a mix."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["atomic_write", "fsync_dir", "remove_leftovers", "write_tmp"]


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one rename, durably: readers see the old file or the new one."""
    os.replace(write_tmp(path, data), path)
    fsync_dir(path.parent)


def write_tmp(path: Path, data: bytes) -> Path:
    """Write `data` to a new temporary file next to `path`, flushed to disk; return its path."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def fsync_dir(directory: Path) -> None:
    """Make renames in `directory` durable (POSIX; a no-op where directories cannot be opened)."""
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_leftovers(folder: Path) -> None:
    """Remove the temporary files `write_tmp` left in `folder` when a process died while writing; call it
    only while holding the folder's lock, when no other process can be writing there."""
    for tmp in folder.glob(".*.*.tmp"):
        tmp.unlink(missing_ok=True)
