"""A session's write buffer: what one request read and changed, until its save."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .store import Changes

ABSENT: Any = object()  # cached marker: this key is known not to exist
# Encodings of these types cannot change behind our back, so the one made at assignment
# is reused at save; containers are encoded again at save because they may be mutated.
_IMMUTABLE = (str, int, float, bool, bytes, type(None))

Encoder = Callable[[str, Any], bytes]


class WriteBuffer:
    """One request's view of its session's values, and the changes it has not saved yet.

    ``values`` caches the values read and holds those set (:data:`ABSENT`: known not to
    exist); ``versions`` the stored versions read (strict mode compares them at save);
    ``encoded`` the encodings made at assignment; ``dirty`` the keys set or changed in
    place, ``deleted`` the keys deleted, ``cleared`` whether the request cleared the
    session before the changes in ``dirty``.
    """

    __slots__ = ("cleared", "deleted", "dirty", "encoded", "values", "versions")

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.versions: dict[str, int | None] = {}
        self.encoded: dict[str, bytes] = {}
        self.dirty: set[str] = set()
        self.deleted: set[str] = set()
        self.cleared = False

    def set(self, key: str, value: Any, encoded: bytes) -> None:
        """``session[key] = value``, with ``encoded`` the value as it would be stored."""
        if isinstance(value, _IMMUTABLE):
            self.encoded[key] = encoded
        else:
            self.encoded.pop(key, None)
        self.values[key] = value
        self.dirty.add(key)
        self.deleted.discard(key)

    def delete(self, key: str) -> None:
        """``del session[key]``."""
        self.values[key] = ABSENT
        self.encoded.pop(key, None)
        self.dirty.discard(key)
        self.deleted.add(key)

    def clear(self) -> None:
        """Forget every key: the save starts from an empty session."""
        self.values.clear()
        self.encoded.clear()
        self.dirty.clear()
        self.deleted.clear()
        self.cleared = True

    def mark_changed(self, key: str) -> bool:
        """The value of ``key`` was changed in place; False if the key is not (or no longer) set."""
        if self.values.get(key, ABSENT) is ABSENT:
            return False
        self.dirty.add(key)
        self.encoded.pop(key, None)
        return True

    def forget_reads(self) -> None:
        """Drop the values and versions read (what this request set stays), to read afresh."""
        self.values = {k: v for k, v in self.values.items() if k in self.dirty}
        self.versions = {}

    def keys_over(self, stored: list[str]) -> list[str]:
        """The keys as this request sees them, given the ``stored`` ones."""
        present = [k for k in stored if k not in self.deleted]
        known = set(present)
        present.extend(k for k in self.values if k in self.dirty and k not in known)
        return present

    def changes(
        self,
        encode: Encoder,
        *,
        strict: bool,
        expires_at: float,
        permanent: bool,
        baseline: int,
        move_to: str | None,
        moved_grace: float,
    ) -> Changes:
        """The batch that saves these changes (``encode`` encodes a value changed in place).

        With ``strict``, the batch carries the version read of each key it writes; the
        other arguments are the session's, passed on (see :class:`Changes`).
        """
        upserts = {}
        for key in self.dirty:
            encoded = self.encoded.get(key)
            upserts[key] = encoded if encoded is not None else encode(key, self.values[key])
        expected = None
        if strict:
            written = upserts.keys() | self.deleted
            expected = {k: v for k, v in self.versions.items() if k in written}
        return Changes(
            upserts=upserts,
            deletes=set(self.deleted),
            clear=self.cleared,
            permanent=permanent,
            expires_at=expires_at,
            expected=expected,
            baseline=baseline,
            move_to=move_to,
            moved_grace=moved_grace,
        )

    def settled(self, *, removed: bool = False) -> None:
        """Forget the changes a write has just made durable (``removed``: and the values)."""
        self.dirty.clear()
        self.deleted.clear()
        self.cleared = False
        if removed:
            self.values.clear()
        else:
            self.values = {k: v for k, v in self.values.items() if v is not ABSENT}
