"""`SessionHandle`: one session's file as one request reads and writes it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

import apsw

from ..errors import SessionStorageFull, SessionStorageUnavailable
from .changes import Changes, WriteOutcome
from .checkout import Checkout
from .errors import DISCARD_AFTER, StorageBroken, on_open_file
from .format import Meta
from .removal import unlink_without_tombstone
from .rows import read_keys, read_value, read_version
from .transaction import Transaction
from .write_lock import WriteLock

if TYPE_CHECKING:
    from .store import SessionStore

_T = TypeVar("_T")


class SessionHandle:
    """The one way a request reads and writes its session's file.

    A read goes through the open :meth:`transaction` when inside one, else through the
    connection held since :meth:`SessionStore.open` (``hold=True``), else through a
    connection checked out for that read alone. Holding the connection saves the later
    accesses of the request a pool round trip (an ``lstat`` and two locked pool
    operations) each. A session removed by the protocol meanwhile shows its tombstone
    through the held connection as through any other; a file deleted by hand is noticed
    by the first request that checks the path again (:data:`~.checkout.REVALIDATE_AFTER`).
    A connection not released (a request that never reached its save) is closed when it
    is garbage-collected. Like the session it belongs to, a handle is used by one thread
    at a time. After :meth:`release` it still works, checking a connection out per access.
    """

    __slots__ = ("_checkout", "_path", "_sid", "_store", "_tx")

    def __init__(
        self, store: SessionStore, sid: str, path: str, checkout: Checkout | None = None
    ) -> None:
        self._store = store
        self._sid = sid
        self._path = path
        self._checkout = checkout  # kept past its block by SessionStore.open
        self._tx: Transaction | None = None

    @property
    def held(self) -> bool:
        """True while the handle holds a connection (until :meth:`release`)."""
        return self._checkout is not None and self._checkout.connection is not None

    # -- reading -------------------------------------------------------------------

    def read(self, key: str) -> tuple[bytes, int] | None:
        """The stored value and version of one key, or None if the key is absent."""
        return self._query(lambda conn: read_value(conn, key))

    def version(self, key: str) -> int | None:
        """The version of one key (the value is not read), or None if the key is absent."""
        return self._query(lambda conn: read_version(conn, key))

    def keys(self) -> list[str]:
        """The session's keys (values are not read)."""
        return self._query(read_keys)

    def _query(self, query: Callable[[apsw.Connection], _T]) -> _T:
        """Run ``query`` where the handle reads now; a damaged file raises StorageBroken."""
        if self._tx is not None:
            return self._tx.query(query)
        checkout = self._checkout
        conn = checkout.connection if checkout is not None else None
        if conn is None:
            with Checkout(self._store.connector, self._path) as conn:
                if conn is None:
                    raise StorageBroken("the session file has disappeared")
                return on_open_file(conn, query)
        assert checkout is not None
        try:
            return on_open_file(conn, query)
        except apsw.BusyError as exc:
            raise checkout.lock_timeout() from exc
        except (StorageBroken, SessionStorageUnavailable):
            self.release(broken=True)
            raise

    # -- writing -------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, timeout: float | None = None) -> Iterator[Transaction]:
        """Hold the session's write lock for the block; commit when it ends cleanly.

        Other requests can still read the session meanwhile; writers wait (up to
        ``timeout`` seconds, default ``busy_timeout``) and then get
        :class:`SessionLockTimeout`. ``tx.status`` tells whether the session was still
        live when the lock was taken. Inside the block the handle reads through it.
        """
        checkout = self._write_checkout()
        with checkout as conn:
            if conn is None:
                yield Transaction(self._store, self._sid, None, None)
                return
            with (lock := WriteLock(self._store, self._sid, conn, checkout.meta_now, timeout)):
                self._tx = lock.tx
                try:
                    yield lock.tx
                finally:
                    self._tx = None
            checkout.know(lock.tx.kept_meta)
        self._after(lock)

    def write(self, changes: Changes) -> WriteOutcome:
        """Apply ``changes`` in one transaction."""
        try:
            outcome = self._write_prepared(lambda tx: changes)
        except SessionStorageFull:
            if not changes.empties_the_session:
                raise
            return self._removed_without_space()
        assert outcome is not None
        return outcome

    def write_prepared(
        self, prepare: Callable[[Transaction], Changes | None]
    ) -> tuple[Changes | None, WriteOutcome | None]:
        """Apply the changes ``prepare`` makes, in one transaction, once it has seen the
        session under the write lock (``tx.status``, ``tx.meta``; a missing file is a
        transaction without a connection). Returns those changes and what their write
        did (None when ``prepare`` returned None: nothing written).

        A removal never needs space: changes that empty the session (a logout's clear)
        on a filesystem too full to write them unlink its file all the same. A file too
        full to open for writing is :class:`SessionStorageFull`: ``prepare`` never saw
        it (:meth:`write` knows the session to be live, and removes it all the same).
        """
        made: Changes | None = None

        def prepared(tx: Transaction) -> Changes | None:
            nonlocal made
            made = prepare(tx)
            return made

        try:
            outcome = self._write_prepared(prepared)
        except SessionStorageFull:
            if made is None or not made.empties_the_session:
                raise
            outcome = self._removed_without_space()
        return made, outcome

    def _write_prepared(
        self, prepare: Callable[[Transaction], Changes | None]
    ) -> WriteOutcome | None:
        checkout = self._write_checkout()
        with checkout as conn:
            if conn is None:
                missing = Transaction(self._store, self._sid, None, None)
                return None if prepare(missing) is None else WriteOutcome.GONE
            with (lock := WriteLock(self._store, self._sid, conn, checkout.meta_now)) as tx:
                changes = prepare(tx)
                if changes is None:
                    return None
                outcome = tx.apply(changes)
            checkout.know(tx.kept_meta)
        self._after(lock)
        return outcome

    def _removed_without_space(self) -> WriteOutcome:
        """Unlink the session's file without its tombstone (see :mod:`.removal`)."""
        self.release(broken=True)
        unlink_without_tombstone(self._path, self._store.connector.pool)
        return WriteOutcome.REMOVED

    def _write_checkout(self) -> SessionHandle | Checkout:
        """What a transaction's connection comes from: the held one, else the pool's."""
        if self.held:
            return self
        return Checkout(self._store.connector, self._path, write=True)

    def _after(self, lock: WriteLock) -> None:
        """Once the lock's transaction has committed: unlink a removed session's file."""
        if lock.gone or lock.tx.after_commit():
            self.release(broken=True)  # its file is gone: never back into the pool
            self._store.connector.pool.forget(self._path)  # (nor a checkout's connection)

    def refresh(self, expires_at: float) -> float | None:
        """Push a live session's expiry to ``expires_at``: see :meth:`Transaction.refresh`."""
        with self.transaction() as tx:
            return tx.refresh(expires_at)

    def release(self, *, broken: bool = False) -> None:
        """Give the held connection back (idempotent); ``broken``: close it instead."""
        if self._checkout is not None:
            self._checkout.release(broken=broken)

    # -- the held connection as a transaction's block (see transaction()) ----------

    def meta_now(self, conn: apsw.Connection) -> Meta:
        """The meta row, inside a transaction on the held connection (see
        :meth:`Checkout.meta_now`)."""
        assert self._checkout is not None
        return self._checkout.meta_now(conn)

    def know(self, meta: Meta | None) -> None:
        """See :meth:`Checkout.know`."""
        assert self._checkout is not None
        self._checkout.know(meta)

    def __enter__(self) -> apsw.Connection | None:
        assert self._checkout is not None
        return self._checkout.connection

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        assert self._checkout is not None
        conn = self._checkout.connection
        if conn is not None and conn.in_transaction:
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")
        if isinstance(exc, apsw.BusyError):
            raise self._checkout.lock_timeout() from exc
        if isinstance(exc, DISCARD_AFTER):
            self.release(broken=True)
