"""A session file under its write lock: one batch of changes and what it did."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import apsw

from ..errors import SessionConflictError, SessionRegenerateError
from .changes import Changes, WriteOutcome
from .errors import on_open_file
from .format import INSERT_KV, UPDATE_KEY, UPDATE_META, FileState, Meta, OpenStatus
from .mirror import cover, lower_mirror
from .removal import Removal, unlink_without_tombstone
from .rows import read_items, read_version
from .session_account import SessionAccount

if TYPE_CHECKING:
    from .store import SessionStore

_T = TypeVar("_T")


class Transaction:
    """A session file under its write lock: read consistently, then apply one batch."""

    def __init__(
        self,
        store: SessionStore,
        sid: str,
        conn: apsw.Connection | None,
        meta: Meta | None,
    ) -> None:
        self._store = store
        self._path = store.path_for(sid)
        self._conn = conn
        self.meta = meta
        self._sid = sid
        self._removal: Removal | None = None
        self._user: SessionAccount | None = None  # see user
        self._moved = False  # the session's data now lives in the file of another id
        self._lower_mirror = False  # the commit moves the expiry earlier: see committed()
        self.kept_meta: Meta | None = None  # the meta row, when the batch left it as read

    @property
    def status(self) -> OpenStatus:
        """Whether the session was live when the lock was taken."""
        return self._status(time.time())

    def _status(self, now: float) -> OpenStatus:
        return OpenStatus.MISSING if self.meta is None else self.meta.status(now)

    @property
    def user(self) -> SessionAccount:
        """The user the session belongs to, as this transaction changes it (made at first
        use: most writes never look)."""
        if self._user is None:
            self._user = SessionAccount(self._store, self._sid, self.query)
        return self._user

    def query(self, query: Callable[[apsw.Connection], _T]) -> _T:
        """Run ``query`` under the lock; damage met on the way is :class:`StorageBroken`."""
        assert self._conn is not None
        return on_open_file(self._conn, query)

    def apply(self, changes: Changes) -> WriteOutcome:
        """Apply a batch of changes; the commit happens when the transaction block ends."""
        now = time.time()
        status = self._status(now)
        if status is OpenStatus.MOVED:
            return WriteOutcome.SUPERSEDED
        if status is not OpenStatus.LIVE:
            return WriteOutcome.GONE
        conn, meta = self._conn, self.meta
        assert conn is not None and meta is not None
        if changes.expected is not None:
            self._check_conflicts(changes)
        lifetime = changes.expires_at - now
        expires_at = self._capped(changes.expires_at)
        keeps = self._keeps_counter(changes, expires_at, lifetime)
        # A key's version never passes the change counter the write leaves: strict mode
        # takes a key stamped past the counter it read for another request's change.
        seq = meta.seq if keeps else meta.seq + 1
        nkeys = meta.nkeys
        if changes.clear:
            conn.execute("DELETE FROM kv")
            nkeys = 0
        for key in changes.deletes:
            conn.execute("DELETE FROM kv WHERE key = ?", (key,))
            nkeys -= conn.changes()
        nkeys = self._write_values(changes.upserts, nkeys, seq, changes.value_bytes)
        if nkeys <= 0:
            self.user.drop_user()
            self._remove(meta.seq + 1)
            return WriteOutcome.REMOVED
        if changes.move_to is not None:
            self._move(changes, seq)
            return WriteOutcome.MOVED
        if keeps:
            changes.expires_at = meta.expires_at
            if nkeys != meta.nkeys:
                conn.execute("UPDATE meta SET nkeys = ?", (nkeys,))
            self.kept_meta = meta._replace(nkeys=nkeys)
            return WriteOutcome.WRITTEN
        if changes.user is not None:
            self.user.record_user(changes.user, lifetime)
        changes.expires_at = expires_at
        # The mirror, when it must move, is set up to refresh_fraction of the lifetime
        # beyond the new expiry: the writes that follow within it need no utime.
        lead = (expires_at - now) * self._store.refresh_fraction
        self._update_meta(
            UPDATE_META, (expires_at, int(changes.permanent), seq, nkeys), expires_at, lead
        )
        return WriteOutcome.WRITTEN

    def _keeps_counter(self, changes: Changes, expires_at: float, lifetime: float) -> bool:
        """True when the write leaves the meta row's expiry, flag and change counter as
        they are (storing at most its key count): no user, no new id, the same flag, and
        the expiry not due a move (see :func:`.format.expiry_moves`). In strict mode
        every write moves the counter, which conflicts are judged by."""
        meta = self.meta
        assert meta is not None
        return (
            changes.expected is None
            and changes.user is None
            and changes.move_to is None
            and changes.permanent == meta.permanent
            and meta.keeps_expiry(expires_at, lifetime, self._store.refresh_fraction)
        )

    def _write_values(
        self, upserts: dict[str, bytes], nkeys: int, version: int, value_bytes: int
    ) -> int:
        """Write ``upserts`` stamped ``version``; returns the key count after them."""
        conn = self._conn
        assert conn is not None
        connector = self._store.connector
        key = ""
        try:
            for key, value in upserts.items():
                conn.execute(UPDATE_KEY, (value, version, key))
                if not conn.changes():
                    conn.execute(INSERT_KV, (key, value, version))
                    nkeys += 1
                    connector.check_key_count(nkeys, key)
        except apsw.FullError as exc:
            raise connector.full_error(self._path, key, value_bytes) from exc
        return nkeys

    def refresh(self, expires_at: float) -> float | None:
        """Push a live session's expiry to ``expires_at`` (capped at its absolute
        lifetime); returns the expiry stored, or None if the session is no longer live."""
        if self.status is not OpenStatus.LIVE:
            return None
        assert self._conn is not None and self.meta is not None
        expires_at = self._capped(expires_at)
        if expires_at <= self.meta.expires_at:
            return self.meta.expires_at  # at its absolute deadline: nothing to move
        self._update_meta("UPDATE meta SET expires_at = ?", (expires_at,), expires_at, 0.0)
        return expires_at

    def _capped(self, expires_at: float) -> float:
        """``expires_at``, capped at the session's absolute deadline (when there is one)."""
        if self._store.absolute_lifetime is None:
            return expires_at
        return self._store.capped(expires_at, self.user.read().established_at)

    def revoke(self) -> bool:
        """Remove a live session by the removal protocol; False if it is no longer live.

        Any request still holding the file sees the tombstone at its next write and
        discards its changes, so nothing brings the session back.
        """
        if self.status is not OpenStatus.LIVE:
            return False
        assert self.meta is not None
        self._remove(self.meta.seq + 1)
        return True

    def _update_meta(
        self, update: str, values: tuple[Any, ...], expires_at: float, lead: float
    ) -> None:
        """Run ``update`` (of the meta row, storing ``expires_at``) and keep the file's
        mtime a bound of that expiry (see :mod:`.mirror`).

        Raised now, before the commit, and the new bound stored by ``update``; when the
        expiry moves earlier, the bound comes down with it and the mtime after the
        commit, under a new lock.
        """
        assert self._conn is not None and self.meta is not None
        meta = self.meta
        self._lower_mirror = expires_at < meta.expires_at
        bound = expires_at if self._lower_mirror else cover(self._path, expires_at, meta, lead)
        if bound is not None and meta.mirror is not None:  # (a file of format 4)
            update += ", mirror = ?"
            values += (bound,)
        self._conn.execute(update, values)

    def _check_conflicts(self, changes: Changes) -> None:
        assert self._conn is not None and changes.expected is not None
        conflicts = []
        for key in [*changes.upserts, *changes.deletes]:
            current = read_version(self._conn, key)
            if key in changes.expected:
                if current != changes.expected[key]:
                    conflicts.append(key)
            elif current is not None and current > changes.baseline:
                conflicts.append(key)
        if conflicts:
            raise SessionConflictError(sorted(conflicts))

    def _remove(self, seq: int) -> None:
        """Tombstone the session as GONE; the file is unlinked once that is committed."""
        assert self._conn is not None
        self._removal = Removal(self._conn, self._path, self._store.connector.pool, seq)

    def _move(self, changes: Changes, seq: int) -> None:
        """Copy the session to ``changes.move_to`` and leave a short-lived tombstone here.

        A batch that cleared the session (a logout that wrote again) removes the old
        file instead: its id must lead to nothing, not to a tombstone.
        """
        assert self._conn is not None and changes.move_to is not None
        copy = Changes(
            upserts=read_items(self._conn),
            permanent=changes.permanent,
            expires_at=changes.expires_at,
            account=self.user.moved(changes),
            anonymous=changes.anonymous,
        )
        try:
            self._store.create(changes.move_to, copy, seq=seq)
            changes.expires_at = copy.expires_at  # capped from the new file's establishment
        except (apsw.Error, OSError) as exc:
            # Not damage to this session (the transaction's handler would take a
            # CantOpenError for that and move the user to a fresh session): the move
            # fails, rolled back, and the session stays as it was under its old id.
            raise SessionRegenerateError(
                f"cannot create the regenerated session's file: {type(exc).__name__}: {exc}"
            ) from exc
        self._conn.execute("DELETE FROM kv")
        self._moved = True
        if changes.clear:
            self._remove(seq)
            return
        tombstone_until = time.time() + changes.moved_grace
        self._update_meta(
            "UPDATE meta SET state = ?, expires_at = ?, seq = ?, nkeys = 0",
            (int(FileState.MOVED), tombstone_until, seq),
            tombstone_until,
            0.0,
        )

    def finish_without_space(self) -> bool:
        """The commit failed for want of space and was rolled back: finish a transaction
        that only takes the session away (it emptied it, or moved it to a copy already
        made) by unlinking the file without its tombstone. True when it did.

        Why that is safe: docs/design.md, "Removal without space".
        """
        if self._removal is None and not self._moved:
            return False
        self._removal = None
        unlink_without_tombstone(self._path, self._store.connector.pool)
        return True

    def committed(self) -> None:
        """Right after the commit, on the same connection: prepare a removal's unlink, or
        bring the mirror down to an expiry the commit moved earlier; then drop the index
        entries the committed file no longer confirms."""
        if self._conn is not None:
            if self._removal is not None:
                self._removal.flush(self._conn)
            elif self._lower_mirror:
                lower_mirror(self._conn, self._path)
        if self._user is not None:
            self._user.forget_stale_entries()

    def after_commit(self) -> bool:
        """Unlink a tombstoned file.

        Returns True when this call unlinked the file (False also when someone else
        removed it after our commit: then there is nothing left to do).
        """
        return self._removal is not None and self._removal.unlink()
