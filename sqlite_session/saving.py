"""The end-of-request save of a session, and what it did, as facts for the cookie.

:class:`SessionSaving` adds the save to :class:`~.lifecycle.SessionLifecycle`: a
read-only request's expiry refresh, a write to the bound session's file (or, for a
session changed without being read, to the file its cookie names, looked up under the
write lock), or a new file. What the save did is reported as facts in a
:class:`SaveResult`; the interface decides from them what to do with the cookie.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from .errors import SessionLockTimeout, SessionStorageFull, SessionStorageUnavailable
from .ids import new_session_id, short_id
from .lifecycle import SessionLifecycle, State
from .store import (
    Changes,
    SessionHandle,
    StorageBroken,
    Transaction,
    WriteOutcome,
    expiry_moves,
)

log = logging.getLogger("sqlite_session")


class SaveResult(NamedTuple):
    """What the end-of-request save did: the facts the interface sets the cookie from.

    (A NamedTuple: the cheapest record to build, once per request.)
    """

    sid: str | None  # the id the client should carry from now on (None: no session)
    expires_at: float | None  # the session's expiry as stored
    new_id: bool = False  # the session is stored under an id the client does not hold
    expiry_moved: bool = False  # the save pushed the stored expiry forward
    permanent: bool = False  # the session's permanent flag as stored
    permanent_changed: bool = False  # the flag differs from the one the session had
    remove_cookie: bool = False  # the session no longer exists


_NO_SESSION = SaveResult(None, None)
_SESSION_ENDED = SaveResult(None, None, remove_cookie=True)


class SessionSaving(SessionLifecycle):
    """A :class:`~.lifecycle.SessionLifecycle` that saves itself at the end of the request."""

    def save(self, refresh: bool, check_cookie: Callable[[], object]) -> SaveResult:
        """Write this request's changes in one transaction (the end-of-request save).

        ``refresh`` (``SESSION_REFRESH_EACH_REQUEST``) lets a read-only request push the
        expiry forward, at most once per ``refresh_fraction`` of the lifetime.
        ``check_cookie`` is called before a write that creates a session file (a new
        session, a regenerated id, a fresh copy of a damaged one) or may end with a
        cookie to set or delete (a permanent session's new Expires, a logout, the last
        key deleted), and raises if that cookie could not be set: then nothing is
        written. The caller then calls :meth:`release`.
        """
        now = time.time()
        if self._state is State.UNRESOLVED:
            if not self.pending():
                self._resolve()
            elif (sid := self._read_sid()) is not None:
                # Changed without being read (a value set, a logout's clear): the session
                # is looked up under the write lock, by the transaction that writes it.
                try:
                    return self._write(self._settings.store.handle(sid), now, check_cookie, sid)
                except SessionStorageFull:
                    if self._state is not State.UNRESOLVED:
                        raise
                    # Too full to open the file for writing: looked up as a read does (a
                    # snapshot), so that a logout removes only a live session, and only
                    # once check_cookie has passed, as below.
                    self._open(sid)
            else:
                self._state = State.NEW
        if self._state is State.BOUND:
            if not self.pending():
                return self._refresh(now, refresh)  # read-only: no batch to build
            assert self._handle is not None
            return self._write(self._handle, now, check_cookie)
        return self._unbound(now, check_cookie)

    def _unbound(self, now: float, check_cookie: Callable[[], object]) -> SaveResult:
        """Save a session that no live file backs: a new one, unless it was superseded."""
        if self._state is State.SUPERSEDED:
            if self.modified:
                log.info("discarding changes of a request that carried a regenerated session id")
            return _NO_SESSION
        return self._create(self._changes(now), check_cookie)

    def _batch(self, now: float, check_cookie: Callable[[], object]) -> Changes:
        """This request's changes to the bound session, ``check_cookie`` called first when
        the write may create the regenerated session's file or end with a cookie to set
        (a new Expires) or delete: one that cannot be set must stop the write."""
        buffer = self._buffer
        if buffer.cleared and buffer.dirty and self._new_sid is None:
            # Written after a clear() (a logout's flash): the old id must lead to nothing
            # (OWASP ASVS 3.3.1), so this request's data goes under a new id.
            self._new_sid = new_session_id(self._settings.node)
        changes = self._changes(now)
        permanent = changes.permanent
        if (
            self._new_sid
            or buffer.cleared
            or buffer.deleted
            or permanent
            or permanent != self._stored_permanent
        ):
            check_cookie()
        return changes

    def _write(
        self,
        handle: SessionHandle,
        now: float,
        check_cookie: Callable[[], object],
        unread: str | None = None,
    ) -> SaveResult:
        """Save this request's changes to the file behind ``handle``: the bound session's,
        or, with ``unread``, the session of that id, found under the write lock."""
        changes: Changes | None
        outcome: WriteOutcome | None
        try:
            if unread is None:
                changes = self._batch(now, check_cookie)
                outcome = handle.write(changes)
            else:
                changes, outcome = self._write_unread(handle, unread, now, check_cookie)
        except StorageBroken as exc:
            # The file went bad after it was opened (damaged data pages are only met
            # by the write): save what this request set into a fresh session rather
            # than fail this and every later request carrying the same cookie.
            self._lose_storage(f"writing failed ({exc})")
            return self._create(self._changes(now), check_cookie)
        if outcome is None:  # (unread) no live session under that id
            return self._unbound(now, check_cookie)
        self._settled(outcome)
        if outcome is WriteOutcome.REMOVED:
            return _SESSION_ENDED
        assert changes is not None
        permanent = changes.permanent
        permanent_changed = permanent != self._stored_permanent
        if outcome is WriteOutcome.WRITTEN:
            moved = changes.expires_at != self._expires_at  # (a write moves it when due)
            return SaveResult(
                self._sid, changes.expires_at, False, moved, permanent, permanent_changed
            )
        if outcome is WriteOutcome.MOVED:
            assert self._new_sid is not None
            self._bind(self._new_sid)
            return SaveResult(
                self._sid, changes.expires_at, True, True, permanent, permanent_changed
            )
        if outcome is WriteOutcome.SUPERSEDED:
            log.info("session %s was regenerated meanwhile; changes discarded", short_id(self._sid))
            return _NO_SESSION
        if self._new_sid is None:
            # Cleared (a logout), swept or expired while this request ran: what it
            # changed was read from that session, and must not outlive it.
            log.info("session ended during the request; changes discarded")
            return _NO_SESSION
        self._stale_cookie = True  # a regenerate (a login) starts afresh regardless
        return self._create(changes, check_cookie)

    def _write_unread(
        self, handle: SessionHandle, sid: str, now: float, check_cookie: Callable[[], object]
    ) -> tuple[Changes | None, WriteOutcome | None]:
        """Write a session this request changed without reading it: found under the write
        lock, by the transaction that writes it. Returns the batch (None if none was
        made) and the outcome (None when no live session was found)."""

        def prepare(tx: Transaction) -> Changes | None:
            self._found(sid, tx.status, tx.meta, handle)
            return self._batch(now, check_cookie) if self._state is State.BOUND else None

        return handle.write_prepared(prepare)

    def _create(self, changes: Changes, check_cookie: Callable[[], object]) -> SaveResult:
        """Store this request's values as a new session file under a new id.

        A new anonymous session is not stored while the filesystem is below its reserve
        (see :mod:`.store.reserve`): the request's answer is unchanged, no cookie is set,
        and the session stays new.
        """
        if not changes.upserts or (
            changes.anonymous and not self._settings.store.reserve.admits_anonymous()
        ):
            return _SESSION_ENDED if self._stale_cookie else _NO_SESSION
        check_cookie()
        sid = self._new_sid or new_session_id(self._settings.node)
        self._settings.store.create(sid, changes)
        self._bind(sid)
        self._settled(WriteOutcome.WRITTEN)
        permanent = bool(self._permanent)
        return SaveResult(
            sid, changes.expires_at, True, True, permanent, permanent != self._stored_permanent
        )

    def _refresh(self, now: float, refresh: bool) -> SaveResult:
        assert self._sid is not None and self._expires_at is not None
        assert self._handle is not None
        lifetime = self._session_lifetime(self._anonymous)
        fraction = self._settings.refresh_fraction
        if refresh and expiry_moves(self._expires_at, now + lifetime, lifetime, fraction):
            try:
                refreshed = self._handle.refresh(now + lifetime)
            except (SessionLockTimeout, SessionStorageFull, SessionStorageUnavailable) as exc:
                # The lock held for all of lock_timeout (a long atomic() block or a stuck
                # process), no room on a full filesystem, or no descriptor left: this
                # request only read, so it keeps its response and leaves the refresh to a
                # later request. (Not skipped on a short wait: the sweeper takes the lock
                # briefly to check the expiry, and a refresh that gave way to it would let
                # a session in use expire.)
                log.warning("session %s: expiry refresh skipped: %s", short_id(self._sid), exc)
                return SaveResult(self._sid, self._expires_at)
            if refreshed is None:
                return _SESSION_ENDED
            moved = refreshed != self._expires_at  # (not at an absolute deadline)
            self._expires_at = refreshed
            return SaveResult(self._sid, refreshed, False, moved, bool(self._permanent))
        return SaveResult(self._sid, self._expires_at)
