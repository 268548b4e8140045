"""The janitor's ``flock`` locks: the directory's sweep lock, and a probe without waiting.

Two sweepers at once are safe without any lock (each file's removal is serialised by
its own lock). The sweep lock, a non-blocking ``flock`` on the session directory
itself, is there so that at most one process sweeps a directory at a time: in-app
sweeping (:class:`~sqlite_session.janitor.BackgroundSweeper`) and the CLI both take it.
Locking the directory needs nothing created, so a sweep can start on a full filesystem,
the very moment it is needed most.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

RECORD_NAME = ".last-sweep"  # its mtime: when the last sweep of the directory finished
LEGACY_LOCK_NAME = ".sweep.lock"  # the lock file of earlier versions, never used now
JANITOR_FILES = (RECORD_NAME, LEGACY_LOCK_NAME)


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
    """The non-blocking ``flock`` on a session directory, held during a sweep.

    ``flock`` (not ``fcntl``) locks: POSIX ``fcntl`` locks are per process and would be
    dropped when any descriptor of the file is closed. When the last sweep finished is
    the mtime of :data:`RECORD_NAME`, an empty file (so that many workers that each wake
    up every T seconds sweep about once per T between them); a filesystem with no inode
    left for it only makes each process rely on its own memory of its sweeps.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @property
    def fd(self) -> int:
        """The directory's descriptor, open for the lock's lifetime."""
        return self._fd

    @property
    def last_sweep(self) -> float:
        """When the last recorded sweep of this directory finished (0 if none)."""
        try:
            return os.stat(RECORD_NAME, dir_fd=self._fd, follow_symlinks=False).st_mtime
        except OSError:
            return 0.0

    def record_sweep(self, finished: float) -> bool:
        """Record that a sweep finished at ``finished``; False when it could not be."""
        try:
            fd = os.open(
                RECORD_NAME,
                os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=self._fd,
            )
        except OSError:
            return False
        try:
            os.utime(fd, (finished, finished))
        finally:
            os.close(fd)
        return True


@contextlib.contextmanager
def sweep_lock(directory: str | os.PathLike[str]) -> Iterator[SweepLock | None]:
    """Hold the directory's sweep lock for the block; yields None if another sweep holds it."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    with try_flock(os.fspath(directory), flags) as fd:
        yield None if fd is None else SweepLock(fd)
