"""A session's life against its file: looked up at first use, saved at the end of the request.

:class:`SessionLifecycle` is the storage side of :class:`~.session.PerKeySession`: the
state machine (no file looked at yet, a new session, one bound to a live file, one
another request superseded), the one :class:`~.store.SessionHandle` it reads and writes
through, and the end-of-request save. What the save did is reported as facts in a
:class:`SaveResult`; the interface decides from them what to do with the cookie.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import Enum
from typing import NamedTuple

from .buffer import WriteBuffer
from .client import recorded_client
from .errors import SessionLockTimeout, SessionStorageFull, SessionStorageUnavailable
from .ids import new_session_id, short_id
from .settings import SessionSettings
from .store import (
    Changes,
    Meta,
    Opened,
    OpenStatus,
    SessionHandle,
    StorageBroken,
    Transaction,
    UserChange,
    WriteOutcome,
)

log = logging.getLogger("sqlite_session")

_UNSET = object()  # set_user() not called


class State(Enum):
    """Where a request's session stands against its file."""

    UNRESOLVED = "unresolved"  # nothing looked at yet
    NEW = "new"  # no stored session (yet)
    BOUND = "bound"  # backed by a live session file
    # Another request moved (regenerated) or ended the session this request opened: what
    # this request changes is discarded, and its cookie left alone. (The store's names:
    # the file is OpenStatus.MOVED; a write that finds it so, WriteOutcome.SUPERSEDED.)
    SUPERSEDED = "superseded"


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


class SessionLifecycle:
    """The storage side of a session: its file, looked up once, and the save.

    ``read_sid`` returns the verified id from the request's cookie (or None) and is
    called at most once, on first use; ``lifetime`` returns the app's
    ``PERMANENT_SESSION_LIFETIME`` in seconds.
    """

    # The starting state of every request's session, as class attributes: an instance
    # stores only what a request changes, and most requests never touch their session.
    _state = State.UNRESOLVED
    _sid: str | None = None
    _new_sid: str | None = None
    _stale_cookie = False
    _expires_at: float | None = None
    _baseline = 0
    _permanent: bool | None = None
    _stored_permanent = False  # the permanent flag of the file when it was opened
    _anonymous = False  # the bound file's session was never established
    _regenerated = False  # regenerate() was called: the session is established at save
    _handle: SessionHandle | None = None  # the bound file's; holds its connection until save
    _in_atomic = False
    _explicit_user: object = _UNSET  # set_user()'s, until saved
    modified = False
    accessed = False

    def __init__(
        self,
        settings: SessionSettings,
        read_sid: Callable[[], str | None],
        lifetime: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._read_sid = read_sid
        self._lifetime = lifetime
        self._buffer = WriteBuffer()

    # -- the state machine ---------------------------------------------------------

    def _resolve(self, key: str | None = None) -> Opened | None:
        """Verify the cookie and open the session, once; returns what the store found then.

        ``key`` is read in the same query as the meta row (see :meth:`SessionStore.open`);
        the returned :class:`Opened` carries its row. None when already resolved or
        when the request carries no valid cookie.
        """
        if self._state is not State.UNRESOLVED:
            return None
        sid = self._read_sid()
        if sid is None:
            self._state = State.NEW
            return None
        return self._open(sid, key)

    def _open(self, sid: str, key: str | None = None) -> Opened:
        """Open session ``sid`` (the cookie's, verified) and take on what was found."""
        opened = self._settings.store.open(sid, key, hold=True)
        self._found(sid, opened.status, opened.meta, opened.handle)
        return opened

    def _found(
        self, sid: str, status: OpenStatus, meta: Meta | None, handle: SessionHandle | None
    ) -> None:
        """Take on what the store found under ``sid``: at the first access, or under the
        write lock of a save that changed the session without reading it."""
        if status is OpenStatus.LIVE:
            assert meta is not None
            self._state = State.BOUND
            self._sid = sid
            self._handle = handle
            self._expires_at = meta.expires_at
            self._baseline = meta.seq
            self._stored_permanent = meta.permanent
            self._anonymous = meta.anonymous
            if self._permanent is None:
                self._permanent = meta.permanent
        elif status is OpenStatus.MOVED:
            self._state = State.SUPERSEDED
        else:
            self._state = State.NEW
            self._stale_cookie = True

    def _bind(self, sid: str) -> None:
        """Continue as the session stored under ``sid``, a file this request has written."""
        self.release()
        self._sid, self._new_sid, self._state = sid, None, State.BOUND
        self._handle = self._settings.store.handle(sid)

    def _lose_storage(self, why: str) -> None:
        """Continue as a fresh session after the file turned out to be unusable."""
        log.warning("session %s: %s; continuing with a fresh session", short_id(self._sid), why)
        if not self._in_atomic:  # inside atomic() the transaction block releases it
            self.release(broken=True)
        self._state = State.NEW
        self._sid = None
        self._stale_cookie = True
        self._buffer.forget_reads()

    def release(self, *, broken: bool = False) -> None:
        """Give back the session file's connection held since the first read (idempotent).

        The interface calls it when the request's save is over, whichever way it ended;
        a session used again after it (a streamed response) checks a connection out per
        access, as before its first read.
        """
        if self._handle is not None:
            self._handle.release(broken=broken)

    # -- building a batch ----------------------------------------------------------

    def _changes(self, now: float, *, move: bool = True) -> Changes:
        settings = self._settings
        user = self._user_change()
        anonymous = self._stays_anonymous(user)
        changes = self._buffer.changes(
            settings.encode,
            strict=settings.strict,
            expires_at=now + self._session_lifetime(anonymous),
            permanent=bool(self._permanent),
            baseline=self._baseline,
            move_to=self._new_sid if move and self._state is State.BOUND else None,
            moved_grace=settings.regenerate_grace,
        )
        changes.user = user
        changes.anonymous = anonymous
        return changes

    def _stays_anonymous(self, user: UserChange | None) -> bool:
        """True when the session is still not established once this request is saved:
        no ``regenerate()`` and no user recorded, now or before (see :mod:`.store.format`).
        What a logout writes after its ``clear()`` (a flash) is anonymous again."""
        if self._regenerated or (user is not None and user.user is not None):
            return False
        return self._anonymous or self._buffer.cleared or self._state is not State.BOUND

    def _session_lifetime(self, anonymous: bool) -> float:
        """The app's lifetime, or the shorter ``anonymous_lifetime`` of an anonymous session."""
        lifetime = self._lifetime()
        limit = self._settings.anonymous_lifetime
        return min(lifetime, limit) if anonymous and limit is not None else lifetime

    def _user_change(self) -> UserChange | None:
        """The user this request gives the session, if it changes it (a login, a logout).

        Set by :meth:`set_user`, else by the ``user_key`` written, deleted or cleared;
        None for the other requests (most): then the save does nothing for accounts.
        """
        buffer = self._buffer
        key = self._settings.user_key
        if self._explicit_user is not _UNSET:
            user = self._explicit_user
        elif key in buffer.dirty:
            user = buffer.values[key]
        elif key in buffer.deleted or buffer.cleared:
            user = None
        else:
            return None
        if user is None:
            return UserChange(None)
        if self._settings.record_client:
            return UserChange(str(user), *recorded_client())
        return UserChange(str(user))

    def set_user(self, user: object) -> None:
        """Make the session belong to ``user`` (None: to nobody) when it is saved.

        For apps that do not keep the user under ``user_key``; ``str(user)`` is recorded.
        """
        self._explicit_user = user
        self.modified = self.accessed = True

    def _settled(self, outcome: WriteOutcome) -> None:
        """Forget the pending changes that a write has just made durable."""
        removed = outcome is WriteOutcome.REMOVED
        self._buffer.settled(removed=removed)
        self._explicit_user = _UNSET
        if removed:
            self._state = State.NEW
            self._stale_cookie = True

    # -- the end-of-request save ---------------------------------------------------

    def pending(self) -> bool:
        """True when the end-of-request save has something to write (or an id to move)."""
        buffer = self._buffer
        return bool(
            self.modified or buffer.dirty or buffer.deleted or buffer.cleared or self._new_sid
        )

    def touched(self) -> bool:
        """True once the request has read or changed the session's data."""
        return self._state is not State.UNRESOLVED or self.modified

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
            return SaveResult(
                self._sid, changes.expires_at, False, True, permanent, permanent_changed
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
        batch = None

        def prepare(tx: Transaction) -> Changes | None:
            nonlocal batch
            self._found(sid, tx.status, tx.meta, handle)
            if self._state is State.BOUND:
                batch = self._batch(now, check_cookie)
            return batch

        outcome = handle.write_prepared(prepare)
        return batch, outcome

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
        due = self._expires_at - lifetime + lifetime * self._settings.refresh_fraction
        if refresh and now >= due:
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
