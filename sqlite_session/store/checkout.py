"""Checking a connection to a session file out of the pool, and back in."""

from __future__ import annotations

import contextlib
import os
import time

import apsw

from ..errors import SessionLockTimeout
from .connection import Connector, planted
from .errors import DISCARD_AFTER, NoSpace, StorageUnsafe, short_name, unavailable, without_names
from .format import Meta
from .pool import Pooled
from .rows import read_meta

# How long a pooled connection is handed out without an ``lstat`` of its path after the
# last one that found the path still naming the connection's inode. The lstat notices a
# file deleted or replaced by hand (removals by this package leave a tombstone in the
# file, which the connection reads either way); it was the costliest step of a pooled
# read, and a burst of requests (a page and its XHRs) now pays for one.
REVALIDATE_AFTER = 0.1


class Checkout:
    """A connection to one session file for a ``with`` block, or None if it is missing.

    A class, not a generator: contextlib's wrapper is costlier, and this runs twice per
    writing request. A connection is taken from the pool (if the path still names the
    inode it was opened on: see :data:`REVALIDATE_AFTER`) or opened; at the end of the
    block it goes back to the pool, unless the block failed with a SQLite error or the
    connection is a full-disk snapshot, or unless :meth:`keep` made it outlive the block
    (for a :class:`~.handle.SessionHandle`).

    Entering raises :class:`StorageBroken` for anything at the path that is not a
    readable session file of ours (a directory, a symlink, garbage, a foreign database);
    the file is never followed through a symlink and never modified in that case. A
    file that stays locked past the busy timeout is not broken, only busy: that raises
    :class:`SessionLockTimeout`, so a slow writer never makes a request drop the user's
    session for a fresh one. On a full filesystem a reader gets a snapshot (see
    :meth:`Connector.open_snapshot`) and a writer :class:`SessionStorageFull`.
    """

    __slots__ = (
        "_checked",
        "_conn",
        "_connector",
        "_data_version",
        "_inode",
        "_kept",
        "_meta",
        "_path",
        "_reusable",
        "_write",
    )

    def __init__(self, connector: Connector, path: str, *, write: bool = False) -> None:
        self._connector = connector
        self._path = path
        self._write = write
        self._conn: apsw.Connection | None = None
        self._inode = (0, 0)
        self._reusable = True
        self._kept = False
        self._checked = 0.0
        self._meta: Meta | None = None  # see know()
        self._data_version = -1

    def __enter__(self) -> apsw.Connection | None:
        connector, path = self._connector, self._path
        now = time.monotonic()
        pooled = connector.pool.take(path)
        if pooled is not None and now - pooled.checked < REVALIDATE_AFTER:
            self._inode, self._checked = pooled.inode, pooled.checked
            self._meta, self._data_version = pooled.meta, pooled.data_version
            self._conn = pooled.conn
            return pooled.conn
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self._discard(pooled)  # deleted by hand
            return None
        except OSError as exc:  # the directory is at fault (not searchable...), not the file
            self._discard(pooled)
            what = f"session {short_name(path)}: cannot look up its file"
            raise unavailable(what, exc) from without_names(exc)
        refused = planted("the session file", st)
        if refused:
            self._discard(pooled)
            raise StorageUnsafe(refused)
        self._inode = (st.st_dev, st.st_ino)
        self._checked = now
        if pooled is not None and pooled.inode != self._inode:
            self._discard(pooled)  # the path now names another file
            pooled = None
        if pooled is not None:
            conn, self._meta, self._data_version = pooled.conn, pooled.meta, pooled.data_version
        else:
            try:
                conn = connector.freeing_descriptors(lambda: connector.open(path, st))
            except FileNotFoundError:
                return None  # removed between the lstat and the open
            except NoSpace as exc:
                if self._write:
                    raise connector.full_error(path) from exc
                conn, self._reusable = connector.open_snapshot(path), False
            except apsw.BusyError as exc:
                raise connector.lock_timeout(path) from exc
        self._conn = conn
        return conn

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None and self._kept:
            return  # kept: released by its holder
        self.release(broken=isinstance(exc, DISCARD_AFTER) and not isinstance(exc, apsw.BusyError))
        if isinstance(exc, apsw.BusyError):
            raise self.lock_timeout() from exc

    def _discard(self, pooled: Pooled | None) -> None:
        """Close the connections pooled for a path that no longer names their file."""
        if pooled is not None:
            pooled.conn.close()
            self._connector.pool.forget(self._path)

    @property
    def connection(self) -> apsw.Connection | None:
        """The checked-out connection, None once released."""
        return self._conn

    @property
    def writable(self) -> bool:
        """False for a full-disk snapshot (see :meth:`Connector.open_snapshot`)."""
        return self._reusable

    def lock_timeout(self) -> SessionLockTimeout:
        """The error for this file's lock not acquired within the busy timeout."""
        return self._connector.lock_timeout(self._path)

    def keep(self) -> None:
        """Hold the connection beyond the ``with`` block, until :meth:`release`."""
        self._kept = True

    def know(self, meta: Meta | None) -> None:
        """Remember ``meta`` as the file's meta row now, outside a transaction (None:
        forget it): the next transaction on this connection, here or after the pool,
        uses it instead of reading the row while nothing has changed the file since."""
        conn = self._conn
        if meta is None or conn is None:
            self._meta = None
        else:
            self._meta, self._data_version = meta, conn.data_version()

    def meta_now(self, conn: apsw.Connection) -> Meta:
        """The meta row, inside a transaction on ``conn``.

        The row known (see :meth:`know`), if nothing has changed the database since:
        SQLite's data version (``SQLITE_FCNTL_DATA_VERSION``) moves with every commit,
        by this connection or any other process, and is brought up to date when a
        transaction begins (SQLite clears its own page cache on the same signal). That
        saves a write transaction reading the row.
        """
        if self._meta is not None and conn.data_version() == self._data_version:
            return self._meta
        return read_meta(conn)

    def release(self, *, broken: bool = False) -> None:
        """End the checkout: the connection goes back to the pool, or is closed if broken."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.in_transaction:
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")
        if self._reusable and not broken:
            pooled = Pooled(conn, self._inode, self._checked, self._meta, self._data_version)
            self._connector.pool.give(self._path, pooled)
        else:
            conn.close()
