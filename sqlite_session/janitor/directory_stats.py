"""A monitoring snapshot of a session directory: ``sqlite-session stats``."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass

from ..errors import SessionError
from ..store import SUFFIX, OpenStatus, SessionStore
from ..store.reserve import free_space
from ..store.user_index import INDEX_FILES
from .entries import Kind, kind_of

DEFAULT_RESERVE_FRACTION = 0.1  # the interface's default reserve_fraction


@dataclass
class DirectoryStats:
    """A monitoring snapshot of a session directory, from one ``lstat`` per file.

    ``expired`` and the expiries come from the mtime, which bounds the stored expiry from
    above when it mirrors it (see :mod:`sqlite_session.store.mirror`; a file SQLite
    wrote since counts at its last write time). ``free_bytes``, ``total_bytes`` and
    ``reserve_bytes`` describe the filesystem (see :mod:`sqlite_session.store.reserve`).
    ``anonymous`` and ``established`` count the live sessions of each kind; they need
    every file opened, so they are None unless asked for (``detail``).
    """

    sessions: int = 0
    session_bytes: int = 0  # allocated on disk: sum of st_blocks * 512
    expired: int = 0
    oldest_expiry: float | None = None
    newest_expiry: float | None = None
    other_files: int = 0
    other_bytes: int = 0
    seconds: float = 0.0
    free_bytes: int = 0
    total_bytes: int = 0
    reserve_bytes: int = 0
    anonymous: int | None = None
    established: int | None = None

    @property
    def below_reserve(self) -> bool:
        """True while new anonymous sessions are refused (at this reserve)."""
        return self.free_bytes < self.reserve_bytes


def stats(
    directory: str | os.PathLike[str],
    *,
    now: float | None = None,
    reserve_fraction: float = DEFAULT_RESERVE_FRACTION,
    detail: bool = False,
) -> DirectoryStats:
    """Count the sessions of ``directory``, their size on disk and how many have expired;
    with ``detail``, also open each one to count anonymous and established sessions."""
    start = time.monotonic()
    now = time.time() if now is None else now
    space = free_space(os.fspath(directory), reserve_fraction)
    result = DirectoryStats(
        free_bytes=space.free, total_bytes=space.total, reserve_bytes=space.reserve
    )
    store = SessionStore(os.fspath(directory), connection_cache_size=0) if detail else None
    if store is not None:
        result.anonymous = result.established = 0
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
            if store is not None:
                _count_kind(result, store, entry.name)
    result.seconds = time.monotonic() - start
    return result


def _count_kind(result: DirectoryStats, store: SessionStore, name: str) -> None:
    """Count session file ``name`` as anonymous or established, if it is live."""
    try:
        opened = store.open(name[: -len(SUFFIX)])
    except SessionError:
        return  # cannot be opened now: counted by neither
    if opened.status is OpenStatus.LIVE and opened.meta is not None:
        if opened.meta.anonymous:
            result.anonymous = (result.anonymous or 0) + 1
        else:
            result.established = (result.established or 0) + 1
