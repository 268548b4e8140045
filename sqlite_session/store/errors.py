"""The store's internal errors, and what a failure met on a session file means.

A failure is classified once, where it is met: a file that opened and proved not to be
a session of ours (:class:`StorageBroken`), one that must never be written through
(:class:`StorageUnsafe`), one of a newer format (:class:`StorageNewer`), or a process or
system short of a resource for now (:class:`~sqlite_session.SessionStorageUnavailable`:
the file may be fine and is never given up).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from typing import TypeVar

import apsw

from ..errors import SessionLockTimeout, SessionStorageUnavailable
from ..ids import short_id

log = logging.getLogger("sqlite_session")
_T = TypeVar("_T")


class StorageBroken(Exception):
    """A session file that is not ours, is damaged or became unreadable (internal).

    Raised as such only for a file that opened and proved not to be a session of ours
    (not a database, corrupt, another format): the sweeper may remove it after its grace.
    A failure to open a file never proves that (see :func:`open_failure`).
    """


class StorageUnsafe(StorageBroken):
    """A session file that must never be written through (internal).

    A hard link or a symlink at its name or at its ``-wal``/``-shm`` name, something other
    than a regular file there, or a file that opens only read-only. A request carries on
    with a fresh session, as for a damaged file; the sweeper leaves it alone.
    """


class StorageNewer(StorageBroken):
    """A session file of ours in a newer format (written by a newer version during an upgrade).

    Callers that merely read treat it like any unreadable file; the sweeper must leave it
    alone rather than delete sessions a newer version of the app is still serving.
    """


class NoSpace(Exception):
    """Opening a session file failed because the filesystem is full (internal)."""


# errno values of a process or system short of a resource for now: the file may be fine.
# (ENOSPC, a full filesystem, is answered by SessionStorageFull.)
_RESOURCE_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.ENOBUFS}
)
# errno values of a file that is there but that this process may never open for writing.
_REFUSED_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.ELOOP,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.EROFS,
        errno.ENXIO,
        errno.ENODEV,
        errno.ETXTBSY,
    }
)
# A connection whose block ended with one of these is closed, not pooled (a busy lock
# excepted where it is checked): it may be damaged, or it holds descriptors the process lacks.
DISCARD_AFTER = (apsw.Error, StorageBroken, SessionStorageUnavailable)
# What a write transaction may meet in a file that opened: see damage().
DAMAGE_MET_WRITING = (
    apsw.CorruptError,
    apsw.NotADBError,
    apsw.CantOpenError,
    apsw.ReadOnlyError,
    apsw.NoMemError,
)


def open_failure(exc: apsw.Error, path: str, system_errno: int) -> BaseException:
    """What a failure to open a session file (or to read it the first time) means.

    Only a file that opened and proved not to be a session of ours is
    :class:`StorageBroken` (not a database, corrupt). One refused for what it is
    (read-only, a symlink, a file we may not open) is :class:`StorageUnsafe`; one that
    vanished, FileNotFoundError (a busy lock is not a failure to open). Anything else
    (no descriptor, no memory, an error we cannot explain) is
    :class:`SessionStorageUnavailable`: the file may be fine and is never given up.
    SQLite keeps no errno for a failed open, so the file is then opened once here.
    """
    if isinstance(exc, (apsw.NotADBError, apsw.CorruptError)):
        return StorageBroken(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, apsw.ReadOnlyError):
        return StorageUnsafe("the session file opens only read-only")
    if getattr(exc, "extendedresult", None) == apsw.SQLITE_CANTOPEN_SYMLINK:
        return StorageUnsafe("a symlink in the session file's path")
    code = system_errno or _errno_opening(path)
    if code == errno.ENOENT:
        return FileNotFoundError(code, os.strerror(code))
    if code in _REFUSED_ERRNOS:
        return StorageUnsafe(f"the session file cannot be opened: {os.strerror(code)}")
    reason = os.strerror(code) if code else f"{type(exc).__name__}: {exc}"
    return SessionStorageUnavailable(f"cannot open a session file now: {reason}")


def damage(exc: apsw.Error, conn: apsw.Connection) -> BaseException:
    """What a failed statement on a session file that opened means (see :func:`open_failure`).

    Lack of memory or descriptors is :class:`SessionStorageUnavailable`; a file that
    turned out read-only, or a side file refused, :class:`StorageUnsafe`; anything else
    met in a file that opened is damage, :class:`StorageBroken`.
    """
    code = conn.system_errno
    if isinstance(exc, apsw.NoMemError) or code in _RESOURCE_ERRNOS:
        return SessionStorageUnavailable(f"session storage short of resources: {exc}")
    if isinstance(exc, apsw.ReadOnlyError) or (
        isinstance(exc, apsw.CantOpenError) and code in _REFUSED_ERRNOS
    ):
        return StorageUnsafe(f"the session file cannot be written: {exc}")
    return StorageBroken(f"{type(exc).__name__}: {exc}")


def on_open_file(conn: apsw.Connection, query: Callable[[apsw.Connection], _T]) -> _T:
    """``query(conn)``; a failure other than a busy lock is classified by :func:`damage`."""
    try:
        return query(conn)
    except apsw.BusyError:
        raise
    except apsw.Error as exc:
        raise damage(exc, conn) from exc


def _errno_opening(path: str) -> int:
    """The errno that opening ``path`` for reading gives now (0 when it opens)."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK))
    except OSError as exc:
        return exc.errno or 0
    return 0


def short_of_resources(exc: BaseException, conn: apsw.Connection | None, path: str) -> str:
    """Why ``exc`` is a lack of descriptors or memory, or "" when it is not."""
    if isinstance(exc, apsw.NoMemError):
        return "out of memory"
    if isinstance(exc, OSError):
        code = exc.errno or 0
    elif isinstance(exc, (apsw.CantOpenError, apsw.IOError)):
        code = (conn.system_errno if conn is not None else 0) or _errno_opening(path)
    else:
        return ""
    return os.strerror(code) if code in _RESOURCE_ERRNOS else ""


def lock_timeout(path: str, waited: float) -> SessionLockTimeout:
    """The error for a session file that another process kept locked for too long."""
    log.warning("session %s: lock not acquired within %g s", short_name(path), waited)
    return SessionLockTimeout(f"session lock not acquired within {waited:g} s")


def short_name(path: str) -> str:
    """Enough of a session file's name to find it; logs need no more of its id."""
    return short_id(os.path.basename(path))
