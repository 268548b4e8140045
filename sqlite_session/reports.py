"""What the interface reports about sessions: a session's file, a user's sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone


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
