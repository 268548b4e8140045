"""`SessionStore`: the session files of one directory, read and written by session id."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple, TypeVar

import apsw

from .checkout import Checkout
from .connection import Connector
from .errors import (
    DAMAGE_MET_WRITING,
    StorageBroken,
    damage,
    lock_timeout,
    on_open_file,
    short_name,
)
from .files import FileBuilder
from .format import (
    SUFFIX,
    Meta,
    OpenStatus,
    read_keys,
    read_meta,
    read_meta_and_key,
    read_value,
    read_version,
)
from .lease import Borrowed, Lease
from .pool import ConnectionPool
from .removal import SweepOutcome, sweep_file
from .transaction import Changes, Transaction, WriteOutcome

log = logging.getLogger("sqlite_session")
_T = TypeVar("_T")


class Opened(NamedTuple):
    """Result of :meth:`SessionStore.open`: the status and, for a live session, its meta.

    ``row`` is the value and version of the key passed to :meth:`SessionStore.open`
    (None when the key is absent, or when no key was asked for or the session is not live).
    """

    status: OpenStatus
    meta: Meta | None
    row: tuple[bytes, int] | None = None
    lease: Lease | None = None  # with ``hold=True`` and a live session: its connection


class SessionStore:
    """The session files of one directory.

    ``busy_timeout`` (seconds) is how long a write waits for another writer of the same
    session before :class:`SessionLockTimeout`; ``max_session_bytes`` caps a session's
    file through SQLite's ``max_page_count``; ``max_keys`` caps its number of keys.
    ``directory`` is resolved to its real path once, here: SQLite refuses a path with a
    symlink anywhere in it. A directory found gone when a session is created is
    re-created with the interface's checks (``allow_unsafe_directory``).
    """

    def __init__(
        self,
        directory: str,
        *,
        busy_timeout: float = 5.0,
        max_session_bytes: int | None = None,
        max_keys: int | None = None,
        connection_cache_size: int = 128,
        allow_unsafe_directory: bool = False,
    ) -> None:
        self.directory = os.path.realpath(directory)
        self._prefix = os.path.join(directory, "")
        self._pool = ConnectionPool(connection_cache_size)
        self.connector = Connector(
            self.directory,
            self._pool,
            busy_timeout=busy_timeout,
            max_session_bytes=max_session_bytes,
            max_keys=max_keys,
        )
        self._builder = FileBuilder(self.connector, allow_unsafe_directory=allow_unsafe_directory)

    def path_for(self, sid: str) -> str:
        """The file of session ``sid`` (which the caller has validated as an id)."""
        return self._prefix + sid + SUFFIX  # not os.path.join: this runs several times a request

    @property
    def pooled_connections(self) -> int:
        """How many idle connections this process keeps open for later requests."""
        return self._pool.size

    # -- reading -------------------------------------------------------------------

    def open(self, sid: str, key: str | None = None, *, hold: bool = False) -> Opened:
        """Look at session ``sid``: is it live, and if so its meta row (and ``key``'s row).

        With ``hold``, a live session's connection stays checked out as
        ``Opened.lease`` for the caller's later reads and writes, until it releases it.
        Damaged, foreign or planted files are logged and reported as
        :attr:`OpenStatus.BROKEN`; they are left untouched for the sweeper. A file that
        cannot be opened for now raises :class:`SessionStorageUnavailable`: never BROKEN.
        """
        path = self.path_for(sid)
        row = None
        lease = None
        try:
            with (checkout := Checkout(self.connector, path)) as conn:
                if conn is None:
                    return Opened(OpenStatus.MISSING, None)
                if key is None:
                    meta = on_open_file(conn, read_meta)
                else:
                    meta, row = on_open_file(conn, lambda c: read_meta_and_key(c, key))
                status = meta.status(time.time())
                if status is not OpenStatus.LIVE:
                    return Opened(status, None)
                if hold and checkout.writable:  # a full-disk snapshot is not held
                    lease = checkout.keep(meta)
        except (StorageBroken, apsw.Error) as exc:
            log.warning("ignoring unreadable session file %s: %s", short_name(path), exc)
            return Opened(OpenStatus.BROKEN, None)
        return Opened(OpenStatus.LIVE, meta, row, lease)

    def read(self, sid: str, key: str, lease: Lease | None = None) -> tuple[bytes, int] | None:
        """The stored value and version of one key, or None if the key is absent."""
        return self._query(sid, lambda conn: read_value(conn, key), lease)

    def version(self, sid: str, key: str, lease: Lease | None = None) -> int | None:
        """The version of one key (the value is not read), or None if the key is absent."""
        return self._query(sid, lambda conn: read_version(conn, key), lease)

    def keys(self, sid: str, lease: Lease | None = None) -> list[str]:
        """The session's keys (values are not read)."""
        return self._query(sid, read_keys, lease)

    def _query(
        self, sid: str, query: Callable[[apsw.Connection], _T], lease: Lease | None
    ) -> _T:
        """Run ``query`` on ``lease`` or a connection to ``sid``; a failure is StorageBroken."""
        if lease is not None and lease.active:
            return lease.query(query)
        with Checkout(self.connector, self.path_for(sid)) as conn:
            if conn is None:
                raise StorageBroken("the session file has disappeared")
            return on_open_file(conn, query)

    # -- writing -------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(
        self, sid: str, timeout: float | None = None, lease: Lease | None = None
    ) -> Iterator[Transaction]:
        """Hold session ``sid``'s write lock for the block; commit when it ends cleanly.

        Other requests can still read the session meanwhile; writers wait (up to
        ``timeout`` seconds, default ``busy_timeout``) and then get
        :class:`SessionLockTimeout`. ``tx.status`` tells whether the session was still
        live when the lock was taken.
        """
        path = self.path_for(sid)
        connector = self.connector
        if lease is not None and lease.active:
            checkout: Borrowed | Checkout = lease.borrow()
        else:
            checkout = Checkout(connector, path, write=True)
        with checkout as conn:
            if conn is None:
                yield Transaction(self, sid, None, None)
                return
            if timeout is not None:
                conn.setbusytimeout(int(timeout * 1000))
            try:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except apsw.BusyError as exc:
                    waited = connector.busy_timeout if timeout is None else timeout
                    raise lock_timeout(path, waited) from exc
                tx = Transaction(self, sid, conn, checkout.meta_now(conn), checkout.mtime)
                try:
                    yield tx
                    conn.execute("COMMIT")
                    tx.committed()
                    if tx.new_mtime is not None:  # pooled with the connection: the mtime
                        checkout.mtime = tx.new_mtime  # after_commit is about to set
                except BaseException as exc:
                    no_space = connector.out_of_space(exc, conn)  # before ROLLBACK resets errno
                    with contextlib.suppress(apsw.Error):
                        conn.execute("ROLLBACK")
                    if no_space:
                        raise connector.full_error(path) from exc
                    raise
            except DAMAGE_MET_WRITING as exc:
                # CantOpen: a journal or WAL file that cannot be opened (a planted symlink:
                # SQLite never follows one, or no descriptor left) on a disk that is not full.
                raise damage(exc, conn) from exc
            finally:
                if timeout is not None:
                    with contextlib.suppress(apsw.Error):  # (closed if the block broke it)
                        conn.setbusytimeout(int(connector.busy_timeout * 1000))
        if tx.after_commit() and lease is not None:
            lease.release(broken=True)  # its file is gone: never back into the pool

    def write(self, sid: str, changes: Changes, lease: Lease | None = None) -> WriteOutcome:
        """Apply ``changes`` to an existing session in one transaction."""
        with self.transaction(sid, lease=lease) as tx:
            return tx.apply(changes)

    def create(self, sid: str, changes: Changes, *, seq: int = 0) -> None:
        """Write a new session file for ``sid`` holding ``changes.upserts``.

        See :meth:`FileBuilder.create`: never seen half-built, and a failure is a
        :class:`SessionError`, never a raw ``OSError``.
        """
        self._builder.create(self.path_for(sid), changes, seq)

    def forget(self, sid: str) -> None:
        """Close the pooled connections of session ``sid`` (whose file has been unlinked)."""
        self._pool.forget(self.path_for(sid))

    def sweep_file(self, sid: str, now: float, *, dry_run: bool = False) -> SweepOutcome:
        """Remove session ``sid`` if it has expired by ``now``: see :func:`.removal.sweep_file`."""
        return sweep_file(self.connector, self.path_for(sid), now, dry_run=dry_run)
