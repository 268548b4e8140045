"""The removal protocol: tombstone under the write lock, commit, then unlink.

This package never unlinks a session file while someone may still write to it
unnoticed (a file deleted by hand is noticed within
:data:`~.checkout.REVALIDATE_AFTER`). Whoever removes one (the sweeper, a request that
emptied it, a ``regenerate()`` whose old id is cleared) takes the write lock (``BEGIN
IMMEDIATE``), re-checks, sets ``meta.state`` to :attr:`FileState.GONE` and commits before
unlinking. Every write begins the same way and checks the state first, so a request
still holding the old inode sees the tombstone and treats its session as expired instead
of writing into a file nobody will ever read again. An expired session is dead for good:
a write never revives a row whose expiry has passed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from enum import Enum

import apsw

from ..errors import SessionStorageFull, SessionStorageUnavailable
from .connection import Connector
from .errors import (
    NoSpace,
    StorageBroken,
    StorageNewer,
    StorageUnsafe,
    classify,
    damage,
    short_name,
)
from .format import WAL_FILES, FileState
from .mirror import set_mirror
from .pool import ConnectionPool
from .rows import read_meta

log = logging.getLogger("sqlite_session")


class Removal:
    """One session file on its way out: tombstoned in the open transaction on ``conn``.

    The caller commits, then calls :meth:`flush` (still holding the connection) and
    :meth:`unlink`.
    """

    __slots__ = ("_flushed", "_path", "_pool")

    def __init__(self, conn: apsw.Connection, path: str, pool: ConnectionPool, seq: int) -> None:
        conn.execute("UPDATE meta SET state = ?, nkeys = 0, seq = ?", (int(FileState.GONE), seq))
        self._path = path
        self._pool = pool
        self._flushed = False

    def flush(self, conn: apsw.Connection) -> None:
        """After the commit, before the unlink: copy the WAL into the file.

        Once the file is unlinked SQLite can no longer checkpoint it, so its ``-wal`` and
        ``-shm`` would stay behind until the sweeper's grace period. With the tombstone
        in the file itself they can go with it: a process that opened the file just
        before the unlink and makes new ones reads the tombstone from the file. When a
        reader in another process holds back the checkpoint, they are left to the sweeper.
        """
        with contextlib.suppress(apsw.Error):
            frames, copied = conn.wal_checkpoint()
            self._flushed = frames == copied

    def unlink(self) -> bool:
        """Unlink the file (and its side files once flushed); forget its pooled connections.

        Returns True when this call unlinked the file, False when another remover was
        first. Done before the connection closes: a close that deletes the ``-wal`` and
        ``-shm`` left a moment in which another process opening the file found it half
        taken apart (``SQLITE_IOERR_FSTAT``); unlinked first, it finds no file.
        """
        return unlink_session_file(self._path, self._pool, side_files=self._flushed)


def unlink_session_file(path: str, pool: ConnectionPool, *, side_files: bool) -> bool:
    """Unlink ``path``, close its pooled connections and, with ``side_files``, remove its
    ``-wal`` and ``-shm`` (also when another remover was first: its close cannot).

    Returns False when the file was already gone.
    """
    try:
        os.unlink(path)
        unlinked = True
    except FileNotFoundError:
        unlinked = False
    pool.forget(path)
    if side_files:
        for sidecar in WAL_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + sidecar)
    return unlinked


def unlink_without_tombstone(path: str, pool: ConnectionPool) -> None:
    """Take a session away on a filesystem with no room for its tombstone.

    The file goes with its ``-wal`` and ``-shm`` (freeing what they hold), after a
    warning. Why that is safe: docs/design.md, "Removal without space".
    """
    log.warning("session filesystem full: %s removed without a tombstone", short_name(path))
    unlink_session_file(path, pool, side_files=True)


class SweepOutcome(Enum):
    """What :func:`sweep_file` did with one session file."""

    REMOVED = "removed"  # expired: tombstoned, committed and unlinked
    EXPIRED = "expired"  # expired, but a dry run: left in place
    KEPT = "kept"  # not expired (or a MOVED tombstone still in its grace period)
    BUSY = "busy"  # a request holds its lock: the session is in use, skipped
    VANISHED = "vanished"  # removed by someone else before or while we looked
    BROKEN = "broken"  # opened and proved not a session file of ours: untouched, the caller decides
    NEWER = "newer"  # a session file of a newer format: untouched
    UNSAFE = "unsafe"  # planted (a link, not a regular file) or read-only: untouched
    UNOPENED = "unopened"  # could not be opened now (descriptors, memory...): untouched


def sweep_file(connector: Connector, path: str, now: float, *, dry_run: bool) -> SweepOutcome:
    """Remove the session file at ``path`` if it has expired by ``now``.

    The write lock is taken with ``busy_timeout`` (keep it short for a sweeper): a
    session whose lock is held is being used by a request, which is about to refresh or
    remove it, so it is skipped (:attr:`SweepOutcome.BUSY`) rather than waited for. Under
    the lock the expiry is read (the caller could not judge the file from its mtime),
    the file is tombstoned, committed and then unlinked. A dry run reads the expiry
    without taking the lock and changes nothing. The file is opened without following
    symlinks and without the connection pool (a sweep of a million files must not evict
    the connections that requests use). Damaged or foreign files are reported, never
    modified here; a file that cannot be opened (lack of descriptors or memory,
    permissions) or is planted is never reported as damaged.
    """
    try:
        conn = connector.open(path, os.lstat(path))
    except apsw.BusyError:
        return SweepOutcome.BUSY
    except NoSpace:
        return _sweep_without_space(connector, path, now, dry_run=dry_run)
    except (OSError, StorageBroken, SessionStorageUnavailable) as exc:
        return _sweep_outcome(exc, path)
    try:
        if dry_run:
            meta = read_meta(conn)
            return SweepOutcome.EXPIRED if meta.removable(now) else SweepOutcome.KEPT
        conn.execute("BEGIN IMMEDIATE")
        meta = read_meta(conn)
        if not meta.removable(now):
            # Its mtime was no mirror (a WAL checkpoint wrote the file): mirror the
            # expiry again, under the lock, so the next sweep needs only a stat.
            with contextlib.suppress(OSError):
                set_mirror(path, meta.bound)
            return SweepOutcome.KEPT
        removal = Removal(conn, path, connector.pool, meta.seq)
        try:
            conn.execute("COMMIT")
            removal.flush(conn)
        except apsw.FullError:
            # No room even for the tombstone: the session has expired, and an expired
            # session is dead for good (no write revives it), so it goes without one.
            conn.execute("ROLLBACK")
        removed = removal.unlink()
    except apsw.BusyError:
        return SweepOutcome.BUSY
    except apsw.Error as exc:
        return _sweep_outcome(damage(exc, conn), path)
    except (StorageBroken, SessionStorageUnavailable) as exc:
        return _sweep_outcome(exc, path)
    finally:
        if conn.in_transaction:
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")
        conn.close()
    return SweepOutcome.REMOVED if removed else SweepOutcome.VANISHED


def _sweep_without_space(
    connector: Connector, path: str, now: float, *, dry_run: bool
) -> SweepOutcome:
    """Remove an expired session when the filesystem has no room for its ``-shm`` file.

    A full tmpfs is when the sweeper matters most, yet SQLite cannot open a WAL session
    there. Failing for want of space means no connection is open anywhere (an open one
    keeps a full-size ``-shm``) and none can be opened while the disk is full, so the
    expiry read from the file is current and nobody can write in between; an expired
    session is dead for good (no write ever revives one). So it is unlinked without the
    lock, and with it whatever ``-wal``/``-shm`` the failed opens left behind.
    """
    try:
        conn = connector.open_snapshot(path)
        try:
            meta = read_meta(conn)
        finally:
            conn.close()
    except SessionStorageFull:
        return SweepOutcome.BUSY  # its latest state is in a -wal we cannot open: later
    except apsw.Error as exc:
        return _sweep_outcome(classify(exc, 0), path)
    except StorageBroken as exc:
        return _sweep_outcome(exc, path)
    if not meta.removable(now):
        return SweepOutcome.KEPT
    if dry_run:
        return SweepOutcome.EXPIRED
    if not unlink_session_file(path, connector.pool, side_files=True):
        return SweepOutcome.VANISHED
    return SweepOutcome.REMOVED


def _sweep_outcome(failure: BaseException, path: str) -> SweepOutcome:
    """The sweeper's verdict on a session file that failed to open or to be read."""
    if not os.path.lexists(path):
        return SweepOutcome.VANISHED  # (also what a file another sweeper removes can give)
    if isinstance(failure, StorageNewer):
        return SweepOutcome.NEWER
    if isinstance(failure, StorageUnsafe):
        return SweepOutcome.UNSAFE
    if isinstance(failure, StorageBroken):
        return SweepOutcome.BROKEN
    return SweepOutcome.UNOPENED
