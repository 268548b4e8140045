"""A session's life against its file: looked up at first use, changed until its save.

:class:`SessionLifecycle` is the storage side of :class:`~.session.PerKeySession`: the
state machine (no file looked at yet, a new session, one bound to a live file, one
another request superseded), the one :class:`~.store.SessionHandle` it reads and writes
through, and the batch of changes a save writes. The end-of-request save itself is
:class:`~.saving.SessionSaving`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum

from .buffer import WriteBuffer
from .client import recorded_client
from .ids import short_id
from .settings import SessionSettings
from .store import (
    Changes,
    Meta,
    Opened,
    OpenStatus,
    SessionHandle,
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
