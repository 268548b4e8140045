"""The session object a view sees as ``flask.session``.

It is lazy: creating it costs nothing, and the cookie is verified and the file opened
only when the view first touches the data. It caches what it reads for the rest of the
request, buffers writes, and hands the store one batch at the end of the request:
only the keys that changed, so two requests of one session that change different keys
never overwrite each other. The storage side is :class:`~.lifecycle.SessionLifecycle`
(finding the file) and :class:`~.saving.SessionSaving` (the save); the buffer is
:class:`~.buffer.WriteBuffer`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, ItemsView, Iterator, KeysView, ValuesView
from typing import Any
from weakref import ref

from flask.sessions import SessionMixin

from .buffer import ABSENT
from .ids import new_session_id, short_id
from .lifecycle import State
from .saving import SessionSaving
from .store import OpenStatus, StorageBroken
from .tracking import track

log = logging.getLogger("sqlite_session")

# Flask's cookie session keeps ``session.permanent`` as this key; here it is the file's
# permanent flag, shown as the key (present while the session is permanent), never a row.
PERMANENT_KEY = "_permanent"


def _nested_change_notifier(session: PerKeySession, key: str) -> Callable[[], None]:
    """What the tracked containers inside ``session[key]`` call when they are mutated.

    It holds the session weakly: a strong reference would make a cycle (session -> value
    -> callback -> session) that only the garbage collector could free. A value mutated
    after its session is gone changes nothing.
    """
    session_ref = ref(session)

    def changed() -> None:
        alive = session_ref()
        if alive is not None:
            alive.mark_changed(key)

    return changed


class PerKeySession(SessionSaving, SessionMixin):
    """A per-key, lazily loaded session backed by one SQLite file (a ``MutableMapping``).

    ``read_sid`` returns the verified id from the request's cookie (or None) and is
    called at most once, on first use; ``lifetime`` returns the app's
    ``PERMANENT_SESSION_LIFETIME`` in seconds.
    """

    # -- identity ------------------------------------------------------------------

    @property
    def sid(self) -> str | None:
        """The session id; None for a new session before its first save.

        After :meth:`regenerate` this is already the new id.
        """
        self._resolve()
        return self._new_sid or self._sid

    @property
    def new(self) -> bool:  # type: ignore[override]
        """True when no stored session backs this request's session."""
        self._resolve()
        return self._state is not State.BOUND

    @property
    def permanent(self) -> bool:
        """Whether the cookie outlives the browser session (Flask's ``session.permanent``)."""
        self.accessed = True
        if self._permanent is None:
            self._resolve()
            self._permanent = bool(self._permanent)
        return self._permanent

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self._permanent = bool(value)
        self.modified = self.accessed = True

    def regenerate(self) -> None:
        """Give the session a new id at the end of this request, keeping its data.

        The old id's storage is removed (after a short tombstone period during which
        requests still carrying it can neither revive it nor overwrite the new cookie).
        Call it when a user logs in, against session fixation. It also establishes the
        session: from then on it is no longer anonymous (``anonymous_lifetime``).
        """
        self._resolve()
        self._new_sid = new_session_id(self._settings.node)
        self._regenerated = True
        self.modified = self.accessed = True

    # -- reading -------------------------------------------------------------------

    def _lookup(self, key: str, with_value: bool) -> Any:
        """The value of ``key`` (or, without the value, True) from cache or store, else ABSENT."""
        self.accessed = True
        buffer = self._buffer
        if key in buffer.values:
            return buffer.values[key]
        if key == PERMANENT_KEY or not isinstance(key, str):
            return True if key == PERMANENT_KEY and self.permanent else ABSENT
        if buffer.cleared:
            return ABSENT
        opened = self._resolve(key if with_value else None)
        if self._state is not State.BOUND:
            return ABSENT
        assert self._handle is not None
        try:
            if not with_value:
                version = self._handle.version(key)
                buffer.versions.setdefault(key, version)
                if version is None:
                    buffer.values[key] = ABSENT
                    return ABSENT
                return True
            # (At first access the row was read together with the meta row.)
            row = opened.row if opened is not None else self._handle.read(key)
        except StorageBroken as exc:
            self._lose_storage(f"reading {key!r} failed ({exc})")
            return ABSENT
        if row is None:
            buffer.versions[key] = None
            buffer.values[key] = ABSENT
            return ABSENT
        data, version = row
        buffer.versions[key] = version
        try:
            value = self._settings.serializer.loads(data)
        except Exception as exc:  # any decoding failure of stored bytes
            log.warning(
                "session %s: dropping undecodable value of %r: %s", short_id(self._sid), key, exc
            )
            buffer.values[key] = ABSENT
            return ABSENT
        if isinstance(value, (dict, list, tuple)):
            value = track(value, _nested_change_notifier(self, key))
        buffer.values[key] = value
        return value

    def __getitem__(self, key: str) -> Any:
        value = self._lookup(key, with_value=True)
        if value is ABSENT:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """``session.get(key, default)``, without Mapping.get's KeyError round trip."""
        value = self._lookup(key, with_value=True)
        return default if value is ABSENT else value

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return self._lookup(key, with_value=False) is not ABSENT

    def _key_list(self) -> list[str]:
        self.accessed = True
        self._resolve()
        stored: list[str] = []
        if self._state is State.BOUND and not self._buffer.cleared:
            assert self._handle is not None
            try:
                stored = self._handle.keys()
            except StorageBroken as exc:
                self._lose_storage(f"listing keys failed ({exc})")
        if PERMANENT_KEY in stored:  # a row written by an older version: the flag rules
            stored.remove(PERMANENT_KEY)
        present = self._buffer.keys_over(stored)
        if self._permanent:
            present.append(PERMANENT_KEY)
        return present

    def copy(self) -> dict[str, Any]:
        """A shallow copy as a plain ``dict``, as ``copy()`` of Flask's session returns."""
        return dict(self)

    def __iter__(self) -> Iterator[str]:
        return iter(self._key_list())

    def __len__(self) -> int:
        return len(self._key_list())

    # The views are lazy: without these, ``session.keys()`` would read nothing yet and
    # leave the session unmarked, and a response built from it would lack Vary: Cookie.
    def keys(self) -> KeysView[str]:
        self.accessed = True
        return super().keys()

    def items(self) -> ItemsView[str, Any]:
        self.accessed = True
        return super().items()

    def values(self) -> ValuesView[Any]:
        self.accessed = True
        return super().values()

    # -- writing -------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            # Flask's JSON would store 1 under "1", and session[1] would then be missing
            # from the next request on: refused here, where the mistake is made.
            raise TypeError(
                f"session keys must be str, not {type(key).__name__} ({key!r}); "
                f"use session[{str(key)!r}] if that is what you meant"
            )
        if key == PERMANENT_KEY:
            self.permanent = value
            return
        self._buffer.set(key, value, self._settings.encode(key, value))
        self.modified = self.accessed = True

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        if key == PERMANENT_KEY:
            self.permanent = False
            return
        self._buffer.delete(key)
        self.modified = True

    def clear(self) -> None:
        """Remove every key; at the end of the request the file and the cookie go."""
        self._buffer.clear()
        self._permanent = False  # as in Flask, where "_permanent" is an ordinary key
        self.modified = self.accessed = True

    def mark_changed(self, key: str) -> None:
        """Save ``session[key]`` at the end of the request: its value was changed in place.

        The dicts and lists read from the store call it when they are mutated; call it
        after changing a mutable value of another kind in place.
        """
        if self._buffer.mark_changed(key):
            self.modified = True

    # -- atomic blocks ---------------------------------------------------------------

    @contextlib.contextmanager
    def atomic(self, timeout: float | None = None) -> Iterator[None]:
        """Make a read-modify-write of this session atomic across concurrent requests.

        Inside the block the session's write lock is held: other requests of the same
        session can still read, but their saves and ``atomic()`` blocks wait. Values are
        re-read under the lock, and the block's changes are committed when it ends
        (together with any change made earlier in the request). Waiting longer than
        ``timeout`` seconds (default: the interface's ``lock_timeout``) raises
        :class:`~sqlite_session.SessionLockTimeout` and nothing is written. Keep the block
        short: it serialises the session's writers. A session that has never been
        saved needs no lock (no other request can know its id yet).
        """
        self._resolve()
        if self._in_atomic or self._state is not State.BOUND or self._buffer.cleared:
            # (Cleared: what is left is this request's alone, saved under a new id.)
            yield
            return
        assert self._handle is not None
        yielded = False
        try:
            with self._handle.transaction(timeout) as tx:
                if tx.status is not OpenStatus.LIVE:
                    # Regenerated, cleared or expired meanwhile: as at save, what this
                    # request read and changed must not outlive that session: discarded.
                    log.info("session ended before its lock was taken; changes discarded")
                    self._state = State.SUPERSEDED
                    yielded = True
                    yield
                    return
                self._buffer.forget_reads()  # read again, under the lock
                self._in_atomic = True
                try:
                    yielded = True
                    yield
                    if self._state is not State.BOUND:  # a read inside met damage
                        raise StorageBroken("damaged file met inside atomic()")  # roll back
                    # A pending regenerate() is left to the end-of-request save, which
                    # hands the client the new id (moved here, it lost the session).
                    outcome = tx.apply(self._changes(time.time(), move=False))
                finally:
                    self._in_atomic = False
        except StorageBroken as exc:
            # The file is damaged (met taking the lock, reading or writing under it): the
            # lock's transaction was rolled back; carry on as a fresh session, saved with
            # this request's changes at the end of the request.
            if self._state is State.BOUND:
                self._lose_storage(f"atomic() failed ({exc})")
            if not yielded:
                yield
            return
        self._settled(outcome)

    def __repr__(self) -> str:
        return f"<PerKeySession sid={short_id(self._sid)} state={self._state.value}>"
