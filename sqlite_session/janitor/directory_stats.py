"""A monitoring snapshot of a session directory: ``sqlite-session stats``."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass

from ..store.user_index import INDEX_FILES
from .entries import Kind, kind_of


@dataclass
class DirectoryStats:
    """A monitoring snapshot of a session directory, from one ``lstat`` per file.

    ``expired`` and the expiries come from the mtime, which bounds the stored expiry from
    above when it mirrors it (see :mod:`sqlite_session.store.mirror`; a file SQLite
    wrote since counts at its last write time).
    """

    sessions: int = 0
    session_bytes: int = 0  # allocated on disk: sum of st_blocks * 512
    expired: int = 0
    oldest_expiry: float | None = None
    newest_expiry: float | None = None
    other_files: int = 0
    other_bytes: int = 0
    seconds: float = 0.0


def stats(directory: str | os.PathLike[str], *, now: float | None = None) -> DirectoryStats:
    """Count the sessions of ``directory``, their size on disk and how many have expired."""
    start = time.monotonic()
    now = time.time() if now is None else now
    result = DirectoryStats()
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode) or entry.name in INDEX_FILES:
                continue
            size = st.st_blocks * 512
            if kind_of(entry.name) is not Kind.SESSION:
                result.other_files += 1
                result.other_bytes += size
                continue
            expiry = st.st_mtime
            result.sessions += 1
            result.session_bytes += size
            result.expired += expiry <= now
            if result.oldest_expiry is None or expiry < result.oldest_expiry:
                result.oldest_expiry = expiry
            if result.newest_expiry is None or expiry > result.newest_expiry:
                result.newest_expiry = expiry
    result.seconds = time.monotonic() - start
    return result
