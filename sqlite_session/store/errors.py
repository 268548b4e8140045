"""The store's internal errors, and what a failure met on a session file means.

A failure is classified once, where it is met: a file that opened and proved not to be
a session of ours (:class:`StorageBroken`), one that must never be written through
(:class:`StorageUnsafe`), one of a newer format (:class:`StorageNewer`), or anything else:
a process or system short of a resource, an I/O error, a directory we cannot search
(:class:`~sqlite_session.SessionStorageUnavailable`: the file may be fine and is never
given up). Messages name a session by its short id only (:func:`short_name`).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

import apsw

from ..errors import SessionLockTimeout, SessionStorageUnavailable
from ..ids import short_id

log = logging.getLogger("sqlite_session")
_T = TypeVar("_T")
_P = ParamSpec("_P")


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
# What a write transaction may meet in a file that opened: see damage(). (A full disk and
# a busy lock are answered before.)
DAMAGE_MET_WRITING = (
    apsw.CorruptError,
    apsw.NotADBError,
    apsw.SQLError,
    apsw.MismatchError,
    apsw.CantOpenError,
    apsw.ReadOnlyError,
    apsw.NoMemError,
    apsw.IOError,
    apsw.ProtocolError,
)
# The only errors that prove a file that opened is not a session of ours: not a database,
# corrupt, or a schema our statements cannot run on (a foreign or hand-edited file).
_PROOF_OF_DAMAGE = (apsw.NotADBError, apsw.CorruptError, apsw.SQLError, apsw.MismatchError)


def open_failure(exc: apsw.Error, path: str, system_errno: int) -> BaseException:
    """What a failure to open a session file (or to read it the first time) means.

    One that vanished is FileNotFoundError (a busy lock is not a failure to open);
    anything else as :func:`classify` says. SQLite keeps no errno for a failed open, so
    the file is then looked at here (see :func:`_errno_of`).
    """
    if isinstance(exc, (*_PROOF_OF_DAMAGE, apsw.ReadOnlyError)):
        return classify(exc, system_errno)
    code = system_errno or _errno_of(path)
    if code == errno.ENOENT:
        return FileNotFoundError(code, os.strerror(code))
    return classify(exc, code)


def damage(exc: apsw.Error, conn: apsw.Connection) -> BaseException:
    """What a failed statement on a session file that opened means: see :func:`classify`."""
    return classify(exc, conn.system_errno)


def classify(exc: apsw.Error, code: int) -> BaseException:
    """What an error met opening or using a session file means; ``code`` is its errno.

    Only a file that proved not to be a session of ours (see :data:`_PROOF_OF_DAMAGE`;
    :func:`~.format.check_format` and the typed reads raise StorageBroken themselves)
    is :class:`StorageBroken`. One refused for what it is (read-only, a symlink, a file
    we may not open) is :class:`StorageUnsafe`. Anything else (no descriptor, no memory,
    an I/O or locking-protocol error, an errno we cannot explain) is
    :class:`SessionStorageUnavailable`: the file may be fine and is never given up.
    """
    if isinstance(exc, _PROOF_OF_DAMAGE):
        return StorageBroken(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, apsw.ReadOnlyError):
        return StorageUnsafe("the session file opens only read-only")
    if getattr(exc, "extendedresult", None) == apsw.SQLITE_CANTOPEN_SYMLINK:
        return StorageUnsafe("a symlink in the session file's path")
    if isinstance(exc, apsw.CantOpenError) and code in _REFUSED_ERRNOS:
        return StorageUnsafe(f"the session file cannot be opened: {os.strerror(code)}")
    reason = os.strerror(code) if code else f"{type(exc).__name__}: {exc}"
    return SessionStorageUnavailable(f"session storage unavailable now: {reason}")


def on_open_file(
    conn: apsw.Connection,
    query: Callable[Concatenate[apsw.Connection, _P], _T],
    *args: _P.args,
    **kwargs: _P.kwargs,
) -> _T:
    """``query(conn, *args)``; a failure other than a busy lock is classified by
    :func:`damage`."""
    try:
        return query(conn, *args, **kwargs)
    except apsw.BusyError:
        raise
    except apsw.Error as exc:
        raise damage(exc, conn) from exc


def _errno_of(path: str) -> int:
    """The errno that explains a failed open of ``path`` (0 when none does), found
    without opening it: closing a descriptor of a file drops every POSIX lock that the
    process holds on it, SQLite's own included.

    ``lstat`` tells a file removed (ENOENT); ``access`` a file we may not open for writing;
    opening the directory, a process short of descriptors. Any other failure of the
    ``lstat`` is the directory's fault, not the file's: 0, unexplained, hence transient.
    """
    try:
        os.lstat(path)
    except OSError as exc:
        return errno.ENOENT if exc.errno == errno.ENOENT else 0
    try:
        if not os.access(path, os.R_OK | os.W_OK, effective_ids=True, follow_symlinks=False):
            return errno.EACCES
        os.close(os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    except OSError as exc:
        return exc.errno or 0
    return 0


def unavailable(what: str, exc: OSError) -> SessionStorageUnavailable:
    """:class:`SessionStorageUnavailable` for an ``OSError`` met on the session directory.

    Raise it ``from without_names(exc)``: the ``OSError`` names a session file.
    """
    return SessionStorageUnavailable(f"{what}: {os.strerror(exc.errno or 0)}")


def without_names(exc: OSError) -> OSError:
    """``exc`` without its file names: one names a session file, a whole session id, which
    a traceback in a log must not carry (it is a credential)."""
    return type(exc)(exc.errno, exc.strerror)


def short_of_resources(exc: BaseException, conn: apsw.Connection | None, path: str) -> str:
    """Why ``exc`` is a lack of descriptors or memory, or "" when it is not."""
    if isinstance(exc, apsw.NoMemError):
        return "out of memory"
    if isinstance(exc, OSError):
        code = exc.errno or 0
    elif isinstance(exc, (apsw.CantOpenError, apsw.IOError)):
        code = (conn.system_errno if conn is not None else 0) or _errno_of(path)
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
