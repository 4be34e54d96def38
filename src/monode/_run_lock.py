"""An exclusive lock on a run folder, so two runs never write into the same `--out`.

The lock is `<out>/.monode.lock`, held with `fcntl.flock` (POSIX) for the life of the run, the file
holding the owner's pid for the error message. The kernel drops a flock when its process dies, so the
lock of a killed run is stale by construction and the next run simply takes it: no pid check can
mistake a recycled pid for a live owner. Locking is re-entrant within a process (a task locks before loading data,
the trainer again).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["RunDirectoryError", "RunLockedError", "locked_run_dir"]

LOCK = ".monode.lock"
_held: dict[Path, int] = {}  # resolved folder -> nesting depth in this process


class RunDirectoryError(ValueError):
    """The output folder cannot be created or written."""


class RunLockedError(RuntimeError):
    """Another live process is writing into the same output folder."""


@contextlib.contextmanager
def locked_run_dir(out: str | Path) -> Iterator[Path]:
    """Create `out` if needed and hold its lock for the duration; raises RunLockedError if another live
    process holds it and RunDirectoryError if the folder cannot be created or written."""
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirectoryError(f"cannot create the output folder {folder}: {e.strerror or e}") from e
    key = folder.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield folder
        finally:
            _held[key] -= 1
        return
    release = _acquire(folder / LOCK)
    _held[key] = 1
    try:
        yield folder
    finally:
        del _held[key]
        release()


def _acquire(path: Path) -> Callable[[], None]:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RunDirectoryError(f"cannot write into the output folder {path.parent}: {e.strerror or e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RunLockedError(_locked_message(path.parent, owner)) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    # Closing drops the flock; the file stays (removing it would race with a process about to lock it).
    return lambda: os.close(fd)


def _locked_message(folder: Path, owner: str) -> str:
    return f"{folder} is in use by another monode run (pid {owner}): wait for it to finish or choose another --out"
