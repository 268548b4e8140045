"""What every session of one interface shares, and how a value is encoded for storage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import SessionTooLarge
from .serializer import Serializer
from .store import SessionStore


@dataclass(frozen=True)
class SessionSettings:
    """What every session of one :class:`~sqlite_session.SqliteSessionInterface` shares."""

    store: SessionStore
    serializer: Serializer
    node: str | None
    max_value_bytes: int | None
    strict: bool
    regenerate_grace: float
    refresh_fraction: float
    user_key: str = "_user_id"  # the key whose value is the user the session belongs to
    record_client: bool = False  # record the user agent and coarse address at a login
    anonymous_lifetime: float | None = None  # a never-established session's (None: the app's)

    def encode(self, key: str, value: Any) -> bytes:
        """``session[key] = value`` as stored; TypeError or SessionTooLarge if it cannot be."""
        try:
            data = self.serializer.dumps(value)
        # ValueError: an int of more digits than Python converts to text (10**5000);
        # RecursionError: nesting deeper than the encoder goes.
        except (TypeError, ValueError, RecursionError) as exc:
            raise TypeError(
                f"session[{key!r}]: cannot store a value of type {type(value).__name__}: {exc}"
            ) from exc
        if type(data) is not bytes:  # stored as text, it could never be read back
            raise TypeError(
                f"session[{key!r}]: the serializer returned {type(data).__name__}, not bytes"
            )
        limit = self.max_value_bytes
        if limit is not None and len(data) > limit:
            raise SessionTooLarge(
                key, f"session[{key!r}] is {len(data)} bytes encoded (limit {limit})"
            )
        return data
