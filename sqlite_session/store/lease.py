"""A session file's connection held by one request, from its first read to its save."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import apsw

from ..errors import SessionLockTimeout, SessionStorageUnavailable
from .errors import DISCARD_AFTER, StorageBroken, on_open_file
from .format import Meta, read_meta

if TYPE_CHECKING:
    from .checkout import Checkout

_T = TypeVar("_T")


class Lease:
    """One session file's connection, held by a request from its first read to its save.

    Without it each access would check a connection out of the pool and back (an
    ``lstat`` and two locked pool operations): a request that read three keys and saved
    would do it four times. Through a lease only the first access does. A session
    removed by the protocol meanwhile shows its tombstone through the held connection as
    through any other; a file deleted by hand is noticed by the first request that checks
    the path again (:data:`~.checkout.REVALIDATE_AFTER`). A lease not released (a request
    that never reached its save) is closed when it is garbage-collected. A connection
    whose file was removed during the request goes back to the pool all the same: until
    that check it shows the tombstone (or, deleted by hand, the deleted file), then it
    is closed. Like the session it belongs to, a lease is used by one thread at a time.
    """

    __slots__ = ("_checkout", "_data_version", "_meta")

    def __init__(self, checkout: Checkout, meta: Meta, data_version: int) -> None:
        self._checkout = checkout
        self._meta = meta
        self._data_version = data_version

    def meta_now(self, conn: apsw.Connection) -> Meta:
        """The meta row, inside a transaction on the held connection.

        The row read when the lease was taken, if nothing has changed the database
        since: SQLite's data version (``SQLITE_FCNTL_DATA_VERSION``) moves with every
        commit, by this connection or any other process, and is brought up to date when a
        transaction begins (SQLite clears its own page cache on the same signal). That
        saves the write transaction re-reading the row (a statement and its checks).
        """
        if conn.data_version() == self._data_version:
            return self._meta
        return read_meta(conn)

    @property
    def active(self) -> bool:
        """True until the connection is given back."""
        return self._checkout.connection is not None

    @property
    def connection(self) -> apsw.Connection | None:
        """The held connection, None once given back."""
        return self._checkout.connection

    @property
    def mtime(self) -> float:
        """The file's mtime as last seen or set (the sweeper's hint; see :class:`Changes`)."""
        return self._checkout.mtime

    @mtime.setter
    def mtime(self, value: float) -> None:
        self._checkout.mtime = value  # pooled with the connection when it is given back

    def lock_timeout(self) -> SessionLockTimeout:
        """The error for the file's lock not acquired within the busy timeout."""
        return self._checkout.lock_timeout()

    def query(self, query: Callable[[apsw.Connection], _T]) -> _T:
        """Run ``query`` on the held connection; a failure is classified by ``damage``."""
        conn = self._checkout.connection
        assert conn is not None
        try:
            return on_open_file(conn, query)
        except apsw.BusyError as exc:
            raise self.lock_timeout() from exc
        except (StorageBroken, SessionStorageUnavailable):
            self.release(broken=True)
            raise

    def borrow(self) -> Borrowed:
        """The held connection for one transaction block (see :meth:`SessionStore.transaction`)."""
        return Borrowed(self)

    def release(self, *, broken: bool = False) -> None:
        """Give the connection back (idempotent)."""
        self._checkout.release(broken=broken)


class Borrowed:
    """A lease's connection used for a ``with`` block, with :class:`Checkout`'s error rules."""

    __slots__ = ("_lease",)

    def __init__(self, lease: Lease) -> None:
        self._lease = lease

    @property
    def mtime(self) -> float:
        """The file's mtime as last seen or set (see :attr:`Lease.mtime`)."""
        return self._lease.mtime

    @mtime.setter
    def mtime(self, value: float) -> None:
        self._lease.mtime = value

    def __enter__(self) -> apsw.Connection | None:
        return self._lease.connection

    def meta_now(self, conn: apsw.Connection) -> Meta:
        """The meta row, inside a transaction: see :meth:`Lease.meta_now`."""
        return self._lease.meta_now(conn)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        conn = self._lease.connection
        if conn is not None and conn.in_transaction:
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")
        if isinstance(exc, apsw.BusyError):
            raise self._lease.lock_timeout() from exc
        if isinstance(exc, DISCARD_AFTER):
            self._lease.release(broken=True)
