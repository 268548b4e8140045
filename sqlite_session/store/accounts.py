"""A user's sessions: recorded, listed and revoked through the user index and the files.

The session file is the truth (who the session belongs to, under which handle, since
when); the :class:`~.user_index.UserIndex` finds a user's files without a scan. Every
write follows one order, the session file's write lock first, then the index:

* gaining a user: lock the file, add the index entry (committed), record the user and
  handle in the file, commit; the old handle's entry, if any, goes after;
* losing it (or a revoke): lock the file, drop the user or tombstone the file, commit,
  then drop the entry.

A process killed anywhere leaves at worst an entry the file does not confirm, which
every reader ignores and :meth:`Accounts.sessions` prunes (see :mod:`.user_index`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple, TypeVar

import apsw

from ..errors import SessionStorageUnavailable
from ..ids import is_valid_session_id
from .changes import UserChange
from .checkout import Checkout
from .errors import StorageBroken, on_open_file
from .format import SUFFIX, Account, OpenStatus
from .rows import read_account, read_meta
from .store import SessionStore
from .user_index import PRUNE_AFTER, IndexDamaged, IndexEntry, IndexMissing, UserIndex

log = logging.getLogger("sqlite_session")

_T = TypeVar("_T")


class SessionInfo(NamedTuple):
    """One of a user's sessions, as its file confirms it."""

    handle: str
    sid: str  # never shown to anyone: the cookie is rebuilt from it
    established_at: float  # created, or last regenerated (a login)
    last_seen: float  # the last request that moved the expiry (see refresh_fraction)
    expires_at: float
    agent: str | None
    address: str | None


def _looked_up(store: SessionStore, sid: str, now: float) -> tuple[OpenStatus, float, Account]:
    """A session's status, expiry and account, read from its file (a read, no lock)."""
    with Checkout(store.connector, store.path_for(sid)) as conn:
        if conn is None:
            return OpenStatus.MISSING, 0.0, Account()
        meta = on_open_file(conn, read_meta)
        return meta.status(now), meta.expires_at, on_open_file(conn, read_account)


class Accounts:
    """Who the sessions of ``store``'s directory belong to (see the module docstring)."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.index = UserIndex(store.directory, busy_timeout=store.connector.busy_timeout)

    # -- reading -------------------------------------------------------------------

    def sessions(self, user: str) -> list[SessionInfo]:
        """``user``'s live sessions, each confirmed by its file; unconfirmed entries
        older than :data:`PRUNE_AFTER` are pruned on the way."""
        now = time.time()
        found, stale = [], []
        for entry in self._entries(user):
            info = self._confirmed(entry, now)
            if info is not None:
                found.append(info)
            elif now - entry.added_at > PRUNE_AFTER:
                stale.append(entry.handle)
        if stale:
            self._remove_entries(stale)
        return found

    def _entries(self, user: str) -> list[IndexEntry]:
        """The index's entries of ``user``."""
        return self._repaired(lambda: self.index.entries(user))

    def _repaired(self, operation: Callable[[], _T]) -> _T:
        """Run an index ``operation``; a missing or damaged index is rebuilt from the
        session files and the operation run again (never an error for a request)."""
        try:
            return operation()
        except IndexMissing:
            log.info("user index %s is missing: building it", self.index.path)
            self.rebuild()
            return operation()
        except IndexDamaged as exc:
            log.warning("user index %s: %s: rebuilding it", self.index.path, exc)
            self.rebuild()
            return operation()

    def _confirmed(self, entry: IndexEntry, now: float) -> SessionInfo | None:
        """The session ``entry`` names, if its file is live and names the same user and
        handle; None otherwise (also, logged, when the file cannot be read now)."""
        try:
            status, expires_at, account = _looked_up(self.store, entry.sid, now)
        except (StorageBroken, SessionStorageUnavailable, apsw.Error) as exc:
            log.warning("a session of the user index could not be read: %s", exc)
            return None
        if status is not OpenStatus.LIVE or account.handle != entry.handle:
            return None
        if account.user != entry.user or account.established_at is None:
            return None
        last_seen = account.established_at
        if account.lifetime is not None:
            last_seen = min(now, max(last_seen, expires_at - account.lifetime))
        return SessionInfo(
            entry.handle,
            entry.sid,
            account.established_at,
            last_seen,
            expires_at,
            account.agent,
            account.address,
        )

    def session(self, user: str, handle: str) -> SessionInfo | None:
        """``user``'s session of ``handle``, if its file confirms it."""
        entry = self._repaired(lambda: self.index.entry(handle))
        if entry is None or entry.user != user:
            return None
        return self._confirmed(entry, time.time())

    # -- writing -------------------------------------------------------------------

    def assign(
        self, sid: str, user: str | None, *, agent: str | None = None, address: str | None = None
    ) -> str | None:
        """Make session ``sid`` belong to ``user`` (None: to nobody); returns its handle.

        A session that already belongs to ``user`` keeps its handle (and what was
        recorded at its login). None when the session is no longer live.
        """
        with self.store.transaction(sid) as tx:
            if tx.status is not OpenStatus.LIVE:
                return None
            assert tx.meta is not None
            lifetime = tx.meta.expires_at - time.time()
            return tx.user.record_user(UserChange(user, agent, address), lifetime)

    def add_entry(self, user: str, sid: str) -> str:
        """Add the index entry of ``sid`` belonging to ``user`` (committed); its handle.

        Called under the session file's write lock, before the file records the user.
        An index that cannot be written now is :class:`SessionStorageUnavailable` (the
        caller's transaction rolls back: nothing recorded anywhere), never taken for
        damage of the session file.
        """
        try:
            return self._repaired(lambda: self.index.add(user, sid))
        except (apsw.Error, OSError) as exc:
            raise SessionStorageUnavailable(f"the user index cannot be written: {exc}") from exc

    def new_account(self, change: UserChange, sid: str, lifetime: float) -> Account | None:
        """What a new session file ``sid`` records of ``change.user`` (None: no user),
        its index entry added first (see :meth:`add_entry`)."""
        if change.user is None:
            return None
        handle = self.add_entry(change.user, sid)
        return Account(None, handle, change.user, change.agent, change.address, lifetime)

    def forget_entries(self, handles: list[str]) -> None:
        """Drop the entries of ``handles`` after their session files let them go.

        A failure is logged and left: an entry its file does not confirm is ignored by
        every reader and pruned later.
        """
        try:
            self._remove_entries(handles)
        except (apsw.Error, OSError) as exc:
            log.warning("user index entries left for pruning: %s", exc)

    def _remove_entries(self, handles: list[str]) -> None:
        self._repaired(lambda: self.index.remove(handles))

    def revoke(self, user: str, handle: str) -> bool:
        """End ``user``'s session of ``handle`` for every worker; False if there was none.

        The file is tombstoned under its write lock, committed and unlinked before this
        returns: a request in flight sees the tombstone at its save and discards it.
        """
        entry = self._repaired(lambda: self.index.entry(handle))
        if entry is None or entry.user != user:
            return False
        revoked = self._revoke_entry(entry)
        self._remove_entries([handle])
        return revoked

    def revoke_all(self, user: str, *, keep_sid: str | None = None) -> int:
        """End all of ``user``'s sessions but ``keep_sid``'s; returns how many were ended."""
        entries = [e for e in self._entries(user) if e.sid != keep_sid]
        revoked = sum(self._revoke_entry(entry) for entry in entries)
        self._remove_entries([entry.handle for entry in entries])
        return revoked

    def _revoke_entry(self, entry: IndexEntry) -> bool:
        with self.store.transaction(entry.sid) as tx:
            if tx.status is not OpenStatus.LIVE:
                return False
            account = tx.user.read()
            if (account.user, account.handle) != (entry.user, entry.handle):
                return False  # not (or no longer) this user's session under this handle
            return tx.revoke()

    # -- rebuilding ----------------------------------------------------------------

    def rebuild(self) -> int:
        """Rebuild the index from the session files; returns the number of entries.

        Nobody is logged out: the files keep their users, and entries younger than
        :data:`PRUNE_AFTER` (a login being saved right now) are kept.
        """
        return self.index.rebuild(self._scan(), keep_after=time.time() - PRUNE_AFTER)

    def _scan(self) -> Iterator[IndexEntry]:
        now = time.time()
        with os.scandir(self.store.directory) as entries:
            for dirent in entries:
                name = dirent.name
                sid = name[: -len(SUFFIX)]
                if not name.endswith(SUFFIX) or not is_valid_session_id(sid):
                    continue
                try:
                    status, _, account = _looked_up(self.store, sid, now)
                except (StorageBroken, SessionStorageUnavailable, apsw.Error):
                    continue  # the file's user, if any, is found by a later rebuild
                if status is OpenStatus.LIVE and account.user and account.handle:
                    yield IndexEntry(account.handle, account.user, sid, now)

    def prune(self, now: float) -> int:
        """Drop the entries of session files that no longer exist (after a sweep at ``now``).

        A damaged index is left for the next listing to rebuild.
        """
        cutoff = now - PRUNE_AFTER
        try:
            gone = [
                entry.handle
                for entry in self.index.all_entries()
                if entry.added_at < cutoff and not os.path.lexists(self.store.path_for(entry.sid))
            ]
        except IndexDamaged as exc:
            log.warning("user index %s is damaged (%s): not pruned", self.index.path, exc)
            return 0
        if gone:
            self._remove_entries(gone)
        return len(gone)
