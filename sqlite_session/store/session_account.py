"""`SessionAccount`: the user a session belongs to, as one write transaction changes it.

The account columns of the session's meta row (see :class:`.format.Account`) and the
user index's entries: an entry is committed before the file records its user, and the
entries the file no longer confirms are dropped after the transaction's commit (see
:mod:`.accounts`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

import apsw

from .changes import Changes, UserChange
from .format import Account
from .rows import read_account, write_account

if TYPE_CHECKING:
    from .store import SessionStore

_T = TypeVar("_T")


class Query(Protocol):
    """Runs a query under the transaction's lock (:meth:`.Transaction.query`)."""

    def __call__(self, query: Callable[[apsw.Connection], _T]) -> _T: ...


class SessionAccount:
    """Session ``sid``'s account, read and written through ``query`` (the transaction's)."""

    def __init__(self, store: SessionStore, sid: str, query: Query) -> None:
        self._store = store
        self._sid = sid
        self._query = query
        self.stale_handles: list[str] = []  # index entries to drop once committed

    def read(self) -> Account:
        """The session's :class:`Account`, as of this transaction."""
        return self._query(read_account)

    def write(self, account: Account) -> None:
        """Store ``account`` in the session (committed when the transaction ends)."""
        self._query(lambda conn: write_account(conn, account))

    def record_user(self, change: UserChange, lifetime: float) -> str | None:
        """Make the session belong to ``change.user``; returns its handle in the index.

        The index entry is committed first, the file's columns with this transaction,
        and the old entry dropped after that. A session already belonging to the user
        keeps its handle and what was recorded at its login. ``lifetime``: the idle
        lifetime, from which the last request is inferred.
        """
        account = self.read()
        if account.user == change.user:
            return account.handle
        handle = None
        if change.user is not None:
            handle = self._store.accounts.add_entry(change.user, self._sid)
        self.write(
            account._replace(
                handle=handle,
                user=change.user,
                agent=change.agent,
                address=change.address,
                lifetime=lifetime,
            )
        )
        self._forget_handle(account.handle)
        return handle

    def drop_user(self) -> None:
        """The session is about to be removed: its index entry goes once that is committed."""
        self._forget_handle(self.read().handle)

    def moved(self, changes: Changes) -> Account | None:
        """What the regenerated session's file records of its user (None: no user).

        The user the request sets, else the session's own unless the batch cleared it
        (a logout); its index entry, under the new id, is committed before the file.
        """
        account = self.read()
        self._forget_handle(account.handle)
        if changes.user is not None:
            change = changes.user
        elif account.user is not None and not changes.clear:
            change = UserChange(account.user, account.agent, account.address)
        else:
            return None
        assert changes.move_to is not None
        lifetime = changes.expires_at - time.time()
        return self._store.accounts.new_account(change, changes.move_to, lifetime)

    def forget_stale_entries(self) -> None:
        """After the commit: drop the index entries the file no longer confirms."""
        if self.stale_handles:
            self._store.accounts.forget_entries(self.stale_handles)

    def _forget_handle(self, handle: str | None) -> None:
        if handle is not None:
            self.stale_handles.append(handle)
