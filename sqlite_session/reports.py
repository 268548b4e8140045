"""What the interface reports about sessions (a session's file, a user's sessions), and
the revocation of the sessions it lists: :class:`SessionReports`, the part of
:class:`~sqlite_session.SqliteSessionInterface` an app calls for account-level control
(OWASP ASVS 3.3.3, 3.3.4)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone

from flask import has_request_context
from flask.globals import request_ctx

from .session import PerKeySession
from .settings import SessionSettings
from .store import SessionStore


@dataclass(frozen=True)
class UserSession:
    """One of a user's sessions, as :meth:`SqliteSessionInterface.user_sessions` lists it.

    ``handle`` is opaque: it names the session for :meth:`~SqliteSessionInterface.
    revoke_session` and nothing else (no cookie can be rebuilt from it). ``last_seen``
    is the last request that moved the expiry (so within ``refresh_fraction`` of the
    lifetime). ``user_agent`` and ``network`` are None unless ``record_client`` is on.
    """

    handle: str
    established_at: datetime  # created, or last regenerated (the login)
    last_seen: datetime
    expires_at: datetime
    current: bool  # the session of the request being handled
    user_agent: str | None
    network: str | None  # the client's network at login (a /24 or /48)


@dataclass(frozen=True)
class SessionFileInfo:
    """What :meth:`SqliteSessionInterface.describe` reports about a session's file."""

    path: str
    size: int  # bytes of the file
    wal_size: int  # bytes of its write-ahead log (``<path>-wal``), 0 when there is none
    rows: tuple[tuple[str, int], ...]  # (key, size of its value as stored), one per key


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


def _current_sid() -> str | None:
    """The id of the current request's session, when there is one of ours."""
    if not has_request_context():
        return None
    session = request_ctx.session
    return session.sid if isinstance(session, PerKeySession) else None


class SessionReports:
    """The interface's reports on its sessions, and the revocation of a user's sessions.

    A mixin of :class:`~sqlite_session.SqliteSessionInterface`, which sets ``store`` and
    ``settings``.
    """

    store: SessionStore
    settings: SessionSettings

    def describe(self, session: PerKeySession) -> SessionFileInfo | None:
        """The file that stores ``session`` and the encoded size of each of its values.

        The rows are the session as this request sees it, its pending changes included.
        None when no file stores it yet: a new session, or one given a new id by
        :meth:`~PerKeySession.regenerate` in this request (both get a file when it ends).
        """
        sid = session.sid
        if sid is None:
            return None
        path = self.store.path_for(sid)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return None
        try:
            wal_size = os.stat(path + "-wal").st_size
        except FileNotFoundError:
            wal_size = 0
        dumps = self.settings.serializer.dumps
        rows = tuple((key, len(dumps(value))) for key, value in session.items())
        return SessionFileInfo(path, size, wal_size, rows)

    def user_sessions(self, user: object) -> list[UserSession]:
        """The live sessions of ``user`` (``str(user)``), oldest login first.

        Found through the user index, whatever the number of sessions stored; each is
        confirmed by its file. ``current`` marks the session of the request being
        handled, if any.
        """
        current = _current_sid()
        return [
            UserSession(
                handle=info.handle,
                established_at=utc(info.established_at),
                last_seen=utc(info.last_seen),
                expires_at=utc(info.expires_at),
                current=info.sid == current,
                user_agent=info.agent,
                network=info.address,
            )
            for info in self.store.accounts.sessions(str(user))
        ]

    def revoke_session(self, user: object, handle: str) -> bool:
        """End ``user``'s session of ``handle``; False if there was none.

        From the moment this returns, no worker serves it again: a request of that
        session already in flight finds it ended at its save and writes nothing.
        """
        return self.store.accounts.revoke(str(user), handle)

    def revoke_user_sessions(self, user: object, *, keep_current: bool = False) -> int:
        """End all of ``user``'s sessions, or all but the current request's
        (``keep_current``: after a password change); returns how many were ended."""
        keep = _current_sid() if keep_current else None
        return self.store.accounts.revoke_all(str(user), keep_sid=keep)
