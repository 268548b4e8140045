"""The session object a view sees as ``flask.session``.

It is lazy: creating it costs nothing, and the cookie is verified and the file opened
only when the view first touches the data. It caches what it reads for the rest of the
request, buffers writes, and hands the store one batch at the end of the request:
only the keys that changed, so two requests of one session that change different keys
never overwrite each other.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, ItemsView, Iterator, KeysView, ValuesView
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple
from weakref import ref

from flask.sessions import SessionMixin

from .errors import (
    SessionLockTimeout,
    SessionStorageFull,
    SessionStorageUnavailable,
    SessionTooLarge,
)
from .ids import new_session_id, short_id
from .serializer import Serializer
from .store import (
    Changes,
    Lease,
    Opened,
    OpenStatus,
    SessionStore,
    StorageBroken,
    Transaction,
    WriteOutcome,
)
from .tracking import track

log = logging.getLogger("sqlite_session")

_ABSENT: Any = object()  # cached marker: this key is known not to exist
# Flask's cookie session keeps ``session.permanent`` as this key; here it is the file's
# permanent flag, shown as the key (present while the session is permanent), never a row.
PERMANENT_KEY = "_permanent"
# Encodings of these types cannot change behind our back, so the one made at assignment
# is reused at save; containers are encoded again at save because they may be mutated.
_IMMUTABLE = (str, int, float, bool, bytes, type(None))


class _State(Enum):
    UNRESOLVED = "unresolved"  # nothing looked at yet
    NEW = "new"  # no stored session (yet)
    BOUND = "bound"  # backed by a live session file
    SUPERSEDED = "superseded"  # the cookie names a session another request regenerated


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


class SaveResult(NamedTuple):
    """What the end-of-request save did, for the interface to turn into a cookie.

    (A NamedTuple: a frozen dataclass took 1 µs to build, once per request.)
    """

    sid: str | None  # the id the client should carry from now on (None: no session)
    set_cookie: bool  # a new id or a new Expires: the cookie must be sent
    remove_cookie: bool  # the session no longer exists: the cookie must be deleted
    expires_at: float | None


def _nested_change_notifier(session: PerKeySession, key: str) -> Callable[[], None]:
    """What the tracked containers inside ``session[key]`` call when they are mutated.

    It holds the session weakly. A strong reference made a cycle (session -> value ->
    callback -> session) that only the garbage collector could free: the nested-append
    request ran 2.7 times as many collections as a plain one (84 vs 31 per 2,000
    requests, gc.get_stats). A value mutated after its session is gone changes nothing,
    as before.
    """
    session_ref = ref(session)

    def changed() -> None:
        alive = session_ref()
        if alive is not None:
            alive._nested_change(key)

    return changed


class PerKeySession(SessionMixin):
    """A per-key, lazily loaded session backed by one SQLite file (a ``MutableMapping``).

    ``read_sid`` returns the verified id from the request's cookie (or None) and is
    called at most once, on first use; ``lifetime`` returns the app's
    ``PERMANENT_SESSION_LIFETIME`` in seconds.
    """

    # The starting state of every request's session. As class attributes, an instance
    # stores only what a request changes: a request that never touches its session (most
    # requests of most apps) sets 8 attributes instead of 21 (40 fewer bytecodes).
    _state = _State.UNRESOLVED
    _sid: str | None = None
    _new_sid: str | None = None
    _stale_cookie = False
    _expires_at: float | None = None
    _baseline = 0
    _permanent: bool | None = None
    _stored_permanent = False  # the permanent flag of the file when it was opened
    _cleared = False
    _tx: Transaction | None = None
    _lease: Lease | None = None  # the session file's connection, held until save
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
        self._values: dict[str, Any] = {}
        self._versions: dict[str, int | None] = {}
        self._encoded: dict[str, bytes] = {}
        self._dirty: set[str] = set()
        self._deleted: set[str] = set()

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
        return self._state is not _State.BOUND

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
        Call it when a user logs in, against session fixation.
        """
        self._resolve()
        self._new_sid = new_session_id(self._settings.node)
        self.modified = self.accessed = True

    # -- resolving -----------------------------------------------------------------

    def _resolve(self, key: str | None = None) -> Opened | None:
        """Verify the cookie and open the session, once; returns what the store found then.

        ``key`` is read in the same query as the meta row (see :meth:`SessionStore.open`);
        the returned :class:`Opened` carries its row. None when already resolved or
        when the request carries no valid cookie.
        """
        if self._state is not _State.UNRESOLVED:
            return None
        sid = self._read_sid()
        if sid is None:
            self._state = _State.NEW
            return None
        opened = self._settings.store.open(sid, key, hold=True)
        self._lease = opened.lease
        if opened.status is OpenStatus.LIVE:
            assert opened.meta is not None
            self._state = _State.BOUND
            self._sid = sid
            self._expires_at = opened.meta.expires_at
            self._baseline = opened.meta.seq
            self._stored_permanent = opened.meta.permanent
            if self._permanent is None:
                self._permanent = opened.meta.permanent
        elif opened.status is OpenStatus.MOVED:
            self._state = _State.SUPERSEDED
        else:
            self._state = _State.NEW
            self._stale_cookie = True
        return opened

    def _lose_storage(self, why: str) -> None:
        """Continue as a fresh session after the file turned out to be unusable."""
        log.warning("session %s: %s; continuing with a fresh session", short_id(self._sid), why)
        if self._tx is None:  # inside atomic() the transaction block releases it
            self.release(broken=True)
        self._state = _State.NEW
        self._sid = None
        self._stale_cookie = True
        self._values = {k: v for k, v in self._values.items() if k in self._dirty}
        self._versions = {}

    # -- reading -------------------------------------------------------------------

    def _lookup(self, key: str, with_value: bool) -> Any:
        """The value of ``key`` (or, without the value, True) from cache or store, else _ABSENT."""
        self.accessed = True
        if key in self._values:
            return self._values[key]
        if key == PERMANENT_KEY or not isinstance(key, str):
            return True if key == PERMANENT_KEY and self.permanent else _ABSENT
        if self._cleared:
            return _ABSENT
        opened = self._resolve(key if with_value else None)
        if self._state is not _State.BOUND:
            return _ABSENT
        assert self._sid is not None
        store, tx = self._settings.store, self._tx
        try:
            if not with_value:
                version = tx.version(key) if tx else store.version(self._sid, key, self._lease)
                self._versions.setdefault(key, version)
                if version is None:
                    self._values[key] = _ABSENT
                    return _ABSENT
                return True
            if opened is not None:
                row = opened.row  # read together with the meta row at first access
            else:
                row = tx.read(key) if tx else store.read(self._sid, key, self._lease)
        except StorageBroken as exc:
            self._lose_storage(f"reading {key!r} failed ({exc})")
            return _ABSENT
        if row is None:
            self._versions[key] = None
            self._values[key] = _ABSENT
            return _ABSENT
        data, version = row
        self._versions[key] = version
        try:
            value = self._settings.serializer.loads(data)
        except Exception as exc:  # any decoding failure of stored bytes
            log.warning(
                "session %s: dropping undecodable value of %r: %s", short_id(self._sid), key, exc
            )
            self._values[key] = _ABSENT
            return _ABSENT
        if isinstance(value, (dict, list, tuple)):
            value = track(value, _nested_change_notifier(self, key))
        self._values[key] = value
        return value

    def __getitem__(self, key: str) -> Any:
        value = self._lookup(key, with_value=True)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """``session.get(key, default)``, without Mapping.get's KeyError round trip."""
        value = self._lookup(key, with_value=True)
        return default if value is _ABSENT else value

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return self._lookup(key, with_value=False) is not _ABSENT

    def _key_list(self) -> list[str]:
        self.accessed = True
        self._resolve()
        stored: list[str] = []
        if self._state is _State.BOUND and not self._cleared:
            assert self._sid is not None
            try:
                store = self._settings.store
                stored = self._tx.keys() if self._tx else store.keys(self._sid, self._lease)
            except StorageBroken as exc:
                self._lose_storage(f"listing keys failed ({exc})")
        present = [k for k in stored if k not in self._deleted]
        known = set(present)
        if PERMANENT_KEY in known:  # a row written by an older version: the flag rules
            present.remove(PERMANENT_KEY)
        present.extend(k for k in self._values if k in self._dirty and k not in known)
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

    def _encode(self, key: str, value: Any) -> bytes:
        try:
            data = self._settings.serializer.dumps(value)
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
        limit = self._settings.max_value_bytes
        if limit is not None and len(data) > limit:
            raise SessionTooLarge(
                key, f"session[{key!r}] is {len(data)} bytes encoded (limit {limit})"
            )
        return data

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
        data = self._encode(key, value)
        if isinstance(value, _IMMUTABLE):
            self._encoded[key] = data
        else:
            self._encoded.pop(key, None)
        self._values[key] = value
        self._dirty.add(key)
        self._deleted.discard(key)
        self.modified = self.accessed = True

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        if key == PERMANENT_KEY:
            self.permanent = False
            return
        self._values[key] = _ABSENT
        self._encoded.pop(key, None)
        self._dirty.discard(key)
        self._deleted.add(key)
        self.modified = True

    def clear(self) -> None:
        """Remove every key; at the end of the request the file and the cookie go."""
        self._values.clear()
        self._encoded.clear()
        self._dirty.clear()
        self._deleted.clear()
        self._cleared = True
        self._permanent = False  # as in Flask, where "_permanent" is an ordinary key
        self.modified = self.accessed = True

    def _nested_change(self, key: str) -> None:
        """A tracked container inside ``session[key]`` was mutated."""
        if self._values.get(key, _ABSENT) is not _ABSENT:
            self._dirty.add(key)
            self._encoded.pop(key, None)
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
        if self._tx is not None or self._state is not _State.BOUND or self._cleared:
            # (Cleared: what is left is this request's alone, saved under a new id.)
            yield
            return
        assert self._sid is not None
        yielded = False
        try:
            with self._settings.store.transaction(self._sid, timeout, self._lease) as tx:
                if tx.status is not OpenStatus.LIVE:
                    # Regenerated, cleared or expired meanwhile: as at save, what this
                    # request read and changed must not outlive that session: discarded.
                    log.info("session ended before its lock was taken; changes discarded")
                    self._state = _State.SUPERSEDED
                    yielded = True
                    yield
                    return
                self._values = {k: v for k, v in self._values.items() if k in self._dirty}
                self._versions = {}
                self._tx = tx
                try:
                    yielded = True
                    yield
                    if self._state is not _State.BOUND:  # a read inside met damage
                        raise StorageBroken("damaged file met inside atomic()")  # roll back
                    # A pending regenerate() is left to the end-of-request save, which
                    # hands the client the new id (moved here, it lost the session).
                    outcome = tx.apply(self._changes(time.time(), move=False))
                finally:
                    self._tx = None
        except StorageBroken as exc:
            # The file is damaged (met taking the lock, reading or writing under it): the
            # lock's transaction was rolled back; carry on as a fresh session, saved with
            # this request's changes at the end of the request.
            if self._state is _State.BOUND:
                self._lose_storage(f"atomic() failed ({exc})")
            if not yielded:
                yield
            return
        self._settled(outcome)

    def _settled(self, outcome: WriteOutcome) -> None:
        """Forget the pending changes that a write has just made durable."""
        self._dirty.clear()
        self._deleted.clear()
        self._cleared = False
        self._values = {k: v for k, v in self._values.items() if v is not _ABSENT}
        if outcome is WriteOutcome.REMOVED:
            self._state = _State.NEW
            self._stale_cookie = True
            self._values.clear()

    # -- saving --------------------------------------------------------------------

    def _changes(self, now: float, *, move: bool = True) -> Changes:
        upserts = {}
        for key in self._dirty:
            value = self._values[key]
            encoded = self._encoded.get(key)
            upserts[key] = encoded if encoded is not None else self._encode(key, value)
        expected = None
        if self._settings.strict:
            written = upserts.keys() | self._deleted
            expected = {k: v for k, v in self._versions.items() if k in written}
        lifetime = self._lifetime()
        return Changes(
            upserts=upserts,
            deletes=set(self._deleted),
            clear=self._cleared,
            permanent=bool(self._permanent),
            expires_at=now + lifetime,
            mirror_slack=lifetime * self._settings.refresh_fraction,
            expected=expected,
            baseline=self._baseline,
            move_to=self._new_sid if move and self._state is _State.BOUND else None,
            moved_grace=self._settings.regenerate_grace,
        )

    def pending(self) -> bool:
        """True when the end-of-request save has something to write (or an id to move)."""
        return bool(self.modified or self._dirty or self._deleted or self._cleared or self._new_sid)

    def touched(self) -> bool:
        """True once the request has read or changed the session's data."""
        return self._state is not _State.UNRESOLVED or self.modified

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
        self._resolve()
        now = time.time()
        store = self._settings.store
        if self._state is _State.SUPERSEDED:
            if self.modified:
                log.info("discarding changes of a request that carried a regenerated session id")
            return SaveResult(None, False, False, None)
        if self._state is _State.BOUND and not self.pending():
            return self._refresh(now, refresh)  # read-only: no batch to build (3.5 µs saved)
        if self._cleared and self._dirty and self._new_sid is None:
            # Written after a clear() (a logout's flash): the old id must lead to nothing
            # (OWASP ASVS 3.3.1), so this request's data goes under a new id.
            self._new_sid = new_session_id(self._settings.node)
        changes = self._changes(now)
        if self._state is _State.BOUND:
            assert self._sid is not None
            if self._new_sid or self._cleared or self._deleted or self._cookie_changed():
                # The write may create the regenerated session's file, or end with a
                # cookie to set or delete: one that cannot be set must stop it first.
                check_cookie()
            try:
                outcome = store.write(self._sid, changes, self._lease)
            except StorageBroken as exc:
                # The file went bad after it was opened (damaged data pages are only met
                # by the write): save what this request set into a fresh session rather
                # than fail this and every later request carrying the same cookie.
                self._lose_storage(f"writing failed ({exc})")
                return self._create(self._changes(now), check_cookie)
            self._settled(outcome)
            if outcome is WriteOutcome.WRITTEN:
                return SaveResult(self._sid, self._cookie_changed(), False, changes.expires_at)
            if outcome is WriteOutcome.MOVED:
                self._sid, self._new_sid = self._new_sid, None
                return SaveResult(self._sid, True, False, changes.expires_at)
            if outcome is WriteOutcome.SUPERSEDED:
                log.info(
                    "session %s was regenerated meanwhile; changes discarded", short_id(self._sid)
                )
                return SaveResult(None, False, False, None)
            if outcome is WriteOutcome.REMOVED:
                return SaveResult(None, False, True, None)
            if self._new_sid is None:
                # Cleared (a logout), swept or expired while this request ran: what it
                # changed was read from that session, and must not outlive it.
                log.info("session ended during the request; changes discarded")
                return SaveResult(None, False, False, None)
            self._stale_cookie = True  # a regenerate (a login) starts afresh regardless
        return self._create(changes, check_cookie)

    def release(self, *, broken: bool = False) -> None:
        """Give back the session file's connection held since the first read (idempotent).

        The interface calls it when the request's save is over, whichever way it ended;
        a session used again after it (a streamed response) checks a connection out per
        access, as before its first read.
        """
        if self._lease is not None:
            self._lease.release(broken=broken)
            self._lease = None

    def _cookie_changed(self) -> bool:
        """Whether a save under the same id changed the cookie's Expires.

        The cookie holds only the id, plus Expires for a permanent session: a permanent
        session's save moved its expiry, and a change of the permanent flag adds or drops
        Expires. Otherwise the cookie the client holds is still right and is not re-sent
        (Flask re-sends it whenever the session is modified, because there the data is in
        the cookie). Not re-sending saved 25 µs per writing request here, plus the
        client's work of parsing it (50 µs in Flask's test client).
        """
        return bool(self._permanent) or self._permanent != self._stored_permanent

    def _create(self, changes: Changes, check_cookie: Callable[[], object]) -> SaveResult:
        """Store this request's values as a new session file under a new id."""
        if not changes.upserts:
            return SaveResult(None, False, self._stale_cookie, None)
        check_cookie()
        sid = self._new_sid or new_session_id(self._settings.node)
        self._settings.store.create(sid, changes)
        self._sid, self._new_sid, self._state = sid, None, _State.BOUND
        self._settled(WriteOutcome.WRITTEN)
        return SaveResult(sid, True, False, changes.expires_at)

    def _refresh(self, now: float, refresh: bool) -> SaveResult:
        assert self._sid is not None and self._expires_at is not None
        lifetime = self._lifetime()
        due = self._expires_at - lifetime + lifetime * self._settings.refresh_fraction
        if refresh and now >= due:
            try:
                with self._settings.store.transaction(self._sid, lease=self._lease) as tx:
                    refreshed = tx.refresh(now + lifetime)
            except (SessionLockTimeout, SessionStorageFull, SessionStorageUnavailable) as exc:
                # The lock held for all of lock_timeout (a long atomic() block or a stuck
                # process), no room on a full filesystem, or no descriptor left: this
                # request only read, so it keeps its response and leaves the refresh to a
                # later request. (Not skipped on a short wait: the sweeper takes the lock
                # briefly to check the expiry, and a refresh that gave way to it would let
                # a session in use expire.)
                log.warning("session %s: expiry refresh skipped: %s", short_id(self._sid), exc)
                return SaveResult(self._sid, False, False, self._expires_at)
            if not refreshed:
                return SaveResult(None, False, True, None)
            self._expires_at = now + lifetime
            return SaveResult(self._sid, bool(self._permanent), False, self._expires_at)
        return SaveResult(self._sid, False, False, self._expires_at)

    def __repr__(self) -> str:
        return f"<PerKeySession sid={short_id(self._sid)} state={self._state.value}>"
