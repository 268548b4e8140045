"""`WriteLock`: a session file's write lock, held for a ``with`` block around one transaction."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import apsw

from .errors import DAMAGE_MET_WRITING, damage, lock_timeout
from .format import Meta
from .transaction import Transaction

if TYPE_CHECKING:
    from .store import SessionStore


class WriteLock:
    """``BEGIN IMMEDIATE`` when the block starts, ``COMMIT`` when it ends cleanly, else
    ``ROLLBACK``; entering returns the block's :class:`Transaction`.

    ``conn`` is a connection to session ``sid``'s file, ``meta_now`` reads its meta row
    once the lock is taken, and ``timeout`` (seconds; None: the store's busy timeout) is
    how long to wait for the lock. What goes wrong is answered as the store answers it:
    a lock not had in time is :class:`~sqlite_session.SessionLockTimeout`, damage met on
    the way :class:`StorageBroken` (see :func:`.errors.damage`), no space
    :class:`~sqlite_session.SessionStorageFull`, unless the transaction only took the
    session away: then its file is unlinked without a tombstone and ``gone`` is True.

    A class rather than a generator with contextlib: it runs at every write.
    """

    __slots__ = ("_conn", "_meta_now", "_path", "_sid", "_store", "_timeout", "gone", "tx")

    def __init__(
        self,
        store: SessionStore,
        sid: str,
        conn: apsw.Connection,
        meta_now: Callable[[apsw.Connection], Meta],
        timeout: float | None = None,
    ) -> None:
        self._store = store
        self._sid = sid
        self._path = store.path_for(sid)
        self._conn = conn
        self._meta_now = meta_now
        self._timeout = timeout
        self.gone = False

    def __enter__(self) -> Transaction:
        conn, timeout = self._conn, self._timeout
        if timeout is not None:
            conn.setbusytimeout(int(timeout * 1000))
        try:
            conn.execute("BEGIN IMMEDIATE")
            self.tx = Transaction(self._store, self._sid, conn, self._meta_now(conn))
        except BaseException as exc:
            self._restore_timeout()
            if isinstance(exc, apsw.BusyError):
                waited = self._store.connector.busy_timeout if timeout is None else timeout
                raise lock_timeout(self._path, waited) from exc
            if isinstance(exc, DAMAGE_MET_WRITING):
                raise damage(exc, conn) from exc
            raise
        return self.tx

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        try:
            if exc is not None:
                self._roll_back(exc, committing=False)
                return
            try:
                self._conn.execute("COMMIT")
                self.tx.committed()
            except BaseException as failure:
                self._roll_back(failure, committing=True)
        finally:
            self._restore_timeout()

    def _roll_back(self, exc: BaseException, *, committing: bool) -> None:
        """Roll back after ``exc`` and raise what it means; returns only when the commit
        of a transaction that took the session away failed for want of space, and the
        file was unlinked all the same (see :meth:`Transaction.finish_without_space`)."""
        conn, connector = self._conn, self._store.connector
        no_space = connector.out_of_space(exc, conn)  # before ROLLBACK resets errno
        with contextlib.suppress(apsw.Error):
            conn.execute("ROLLBACK")
        if no_space:
            if committing and self.tx.finish_without_space():
                self.gone = True
                return
            raise connector.full_error(self._path) from exc
        if isinstance(exc, DAMAGE_MET_WRITING):
            # CantOpen: a journal or WAL file that cannot be opened (a planted symlink:
            # SQLite never follows one, or no descriptor left) on a disk that is not full.
            raise damage(exc, conn) from exc
        raise exc

    def _restore_timeout(self) -> None:
        if self._timeout is not None:
            with contextlib.suppress(apsw.Error):  # (closed if the block broke it)
                self._conn.setbusytimeout(int(self._store.connector.busy_timeout * 1000))
