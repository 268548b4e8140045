"""The janitor's ``flock`` locks: the directory's sweep lock, and a probe without waiting.

Two sweepers at once are safe without any lock (each file's removal is serialised by
its own lock). The sweep lock, a non-blocking ``flock`` on ``<dir>/.sweep.lock``, is
there so that at most one process sweeps a directory at a time: in-app sweeping
(:class:`~sqlite_session.janitor.BackgroundSweeper`) and the CLI both take it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

LOCK_NAME = ".sweep.lock"


@contextlib.contextmanager
def try_flock(path: str, flags: int) -> Iterator[int | None]:
    """Open ``path`` and take its exclusive ``flock`` without waiting, for the block.

    Yields the descriptor, or None while someone else holds the lock. (Opening a
    temporary file this way is harmless to SQLite's own locks: only its builder has it
    open, and nobody else ever opens it through SQLite.)
    """
    fd = os.open(path, flags, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        try:
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: a forked child may share this fd
    finally:
        os.close(fd)


class SweepLock:
    """The non-blocking ``flock`` on ``<dir>/.sweep.lock`` held during a sweep.

    ``flock`` (not ``fcntl``) locks, on a file SQLite never opens: POSIX ``fcntl`` locks
    are per process and would be dropped when any descriptor of the file is closed. The
    file also records when the last sweep finished, so that many workers that each wake
    up every T seconds sweep about once per T between them.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @property
    def last_sweep(self) -> float:
        """When the last sweep of this directory finished (0 if never)."""
        try:
            return float(os.pread(self._fd, 64, 0).decode("ascii") or 0)
        except (ValueError, UnicodeDecodeError):
            return 0.0

    def record_sweep(self, finished: float) -> None:
        data = f"{finished:.6f}\n".encode("ascii")
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))


@contextlib.contextmanager
def sweep_lock(directory: str | os.PathLike[str]) -> Iterator[SweepLock | None]:
    """Hold the directory's sweep lock for the block; yields None if another sweep holds it."""
    path = os.path.join(os.fspath(directory), LOCK_NAME)
    with try_flock(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC) as fd:
        yield None if fd is None else SweepLock(fd)
