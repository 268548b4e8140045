"""The user index: which sessions belong to which user, in one SQLite file per directory.

``<directory>/.user-index`` holds one row per session that belongs to a user: the
user, an opaque handle and the session id. Finding a user's sessions is a lookup in the
index on ``user``, whatever the number of sessions stored. It is written only when a
session gains, changes or loses its user, never by an ordinary request.

The index is a hint that the session files confirm, never the other way round:

* an entry is written *before* its session file records the user and handle, and
  removed *after* the file drops them, so a process killed in between leaves an entry
  too many, never one too few;
* whoever reads an entry checks it against the session file (same user, same handle,
  still live) before using it, so a leftover entry never leads to another user's
  session; leftovers are pruned once they are older than :data:`PRUNE_AFTER` (a younger
  one may belong to a save still under way);
* the file can be rebuilt from the session files at any time (:meth:`UserIndex.rebuild`),
  and is, automatically, when it is missing or damaged.

The file is never seen half-built: it is built complete (schema and entries) under a
temporary name and then linked or renamed into place, as the session files are, so a
process killed while creating it leaves only a temporary file, never an index without
its table.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apsw

from .format import TEMP_PREFIX

log = logging.getLogger("sqlite_session")

INDEX_NAME = ".user-index"
# The index and the side files SQLite keeps next to it: the sweeper's known names.
INDEX_FILES = frozenset({INDEX_NAME, *(INDEX_NAME + s for s in ("-wal", "-shm", "-journal"))})
INDEX_APPLICATION_ID = 0x53514C55  # "SQLU"
INDEX_VERSION = 1
# An entry whose session file does not confirm it is pruned only once it is this old: a
# younger one may be a login whose session file is being written right now.
PRUNE_AFTER = 300.0
HANDLE_BYTES = 16

_SCHEMA = f"""
PRAGMA application_id={INDEX_APPLICATION_ID};
PRAGMA user_version={INDEX_VERSION};
CREATE TABLE entry(
    handle TEXT PRIMARY KEY NOT NULL,
    user TEXT NOT NULL,
    sid TEXT NOT NULL,
    added_at REAL NOT NULL
);
CREATE INDEX entry_by_user ON entry(user);
"""


# The header and the table in one statement: an index file always has both (it is
# built complete before it appears), so a file without either is not one of ours.
_CHECK = (
    "SELECT application_id, user_version, "
    "(SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'entry') "
    "FROM pragma_application_id, pragma_user_version"
)


class IndexEntry(NamedTuple):
    """One row of the index: ``sid``'s session belonged to ``user`` under ``handle``."""

    handle: str
    user: str
    sid: str
    added_at: float


def _entry(row: tuple[object, ...]) -> IndexEntry:
    handle, user, sid, added_at = row
    if not (isinstance(handle, str) and isinstance(user, str) and isinstance(sid, str)):
        raise IndexDamaged(f"an entry of unexpected types: {row!r}")
    if not isinstance(added_at, (int, float)):
        raise IndexDamaged(f"an entry of unexpected types: {row!r}")
    return IndexEntry(handle, user, sid, float(added_at))


class IndexDamaged(Exception):
    """The index file is not an index of ours or is corrupt (internal): rebuild it."""


class IndexMissing(IndexDamaged):
    """There is no index file (internal): build it."""


def new_handle() -> str:
    """A fresh opaque handle: random, unrelated to the session id or the cookie.

    Never starting with "-", which a command line would take for an option
    (``sqlite-session revoke --handle H``).
    """
    handle = secrets.token_urlsafe(HANDLE_BYTES)
    return "_" + handle[1:] if handle.startswith("-") else handle


_OPEN_FLAGS = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_NOFOLLOW


class UserIndex:
    """The user index of one session directory (see the module docstring).

    A connection is opened per operation: the index is used at logins, logouts and
    listings, not by ordinary requests, and a per-operation connection is safe across
    ``fork``. ``busy_timeout`` is how long a write waits for another writer.
    """

    def __init__(self, directory: str, *, busy_timeout: float = 5.0) -> None:
        self.path = os.path.join(directory, INDEX_NAME)
        self._busy_ms = int(busy_timeout * 1000)

    def _open(self) -> apsw.Connection:
        """A read-write connection to the index file; IndexMissing when there is none."""
        conn: apsw.Connection | None
        try:
            conn = apsw.Connection(self.path, flags=_OPEN_FLAGS)
        except apsw.CantOpenError as exc:
            if not self.exists():
                raise IndexMissing(f"no user index at {self.path}") from exc
            conn = None
        if conn is None or conn.readonly("main"):
            # Another process linked a new index into place while SQLite opened it: it
            # found no file to open read-write, then one to open read-only (or still
            # none). Opened again; a file that truly cannot be written stays read-only.
            if conn is not None:
                conn.close()
            conn = apsw.Connection(self.path, flags=_OPEN_FLAGS)
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[apsw.Connection]:
        """A connection to the index; IndexMissing without one, IndexDamaged if not ours."""
        conn = self._open()
        try:
            conn.setbusytimeout(self._busy_ms)
            conn.execute("PRAGMA synchronous=OFF")  # on tmpfs, as for the session files
            try:
                self._check(conn)
            except (apsw.CorruptError, apsw.NotADBError) as exc:
                raise IndexDamaged(f"{type(exc).__name__}: {exc}") from exc
            yield conn
        finally:
            conn.close()

    def _check(self, conn: apsw.Connection) -> None:
        header = conn.execute(_CHECK).fetchall()
        if header != [(INDEX_APPLICATION_ID, INDEX_VERSION, 1)]:
            raise IndexDamaged(f"not a user index: {header}")

    def add(self, user: str, sid: str) -> str:
        """Record that ``sid`` is about to belong to ``user``; returns the new entry's handle."""
        handle = new_handle()
        with self._writing() as conn:
            conn.execute("INSERT INTO entry VALUES (?, ?, ?, ?)", (handle, user, sid, time.time()))
        return handle

    def remove(self, handles: Iterable[str]) -> None:
        """Drop the entries of ``handles`` (unknown handles are ignored)."""
        with self._writing() as conn:
            conn.executemany("DELETE FROM entry WHERE handle = ?", [(h,) for h in handles])

    def entries(self, user: str) -> list[IndexEntry]:
        """The entries of ``user``, oldest first (unconfirmed: see the module docstring)."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT handle, user, sid, added_at FROM entry WHERE user = ? ORDER BY added_at",
                (user,),
            ).fetchall()
        return [_entry(row) for row in rows]

    def entry(self, handle: str) -> IndexEntry | None:
        """The entry of ``handle``, or None."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT handle, user, sid, added_at FROM entry WHERE handle = ?", (handle,)
            ).fetchall()
        return _entry(rows[0]) if rows else None

    def all_entries(self) -> Iterator[IndexEntry]:
        """Every entry (for pruning after a sweep)."""
        with self._reading() as conn:
            for row in conn.execute("SELECT handle, user, sid, added_at FROM entry"):
                yield _entry(row)

    def rebuild(self, entries: Iterable[IndexEntry], *, keep_after: float) -> int:
        """Make the index hold ``entries``; returns their number.

        An existing index is rewritten in one transaction, keeping the entries added
        after ``keep_after`` (a login being saved meanwhile); writers wait meanwhile (a
        login blocked past its busy timeout fails with nothing recorded anywhere). A
        missing index is built complete and linked into place; a damaged one is built
        complete and renamed over it.
        """
        rows = list(entries)
        try:
            return self._replace(rows, keep_after)
        except IndexMissing:
            if self._install(rows, replace=False):
                return len(rows)
            return self._replace(rows, keep_after)  # another process built it meanwhile
        except IndexDamaged as exc:
            log.warning("user index %s is damaged (%s): rebuilding it", self.path, exc)
            self._install(rows, replace=True)
            return len(rows)

    def _replace(self, entries: list[IndexEntry], keep_after: float) -> int:
        with self._writing() as conn:
            conn.execute("DELETE FROM entry WHERE added_at <= ?", (keep_after,))
            conn.executemany("INSERT OR REPLACE INTO entry VALUES (?, ?, ?, ?)", entries)
        return len(entries)

    def _install(self, entries: list[IndexEntry], *, replace: bool) -> bool:
        """Build the index complete under a temporary name, then put it in place.

        ``replace``: rename it over the damaged file (its side files go first: SQLite
        would replay a stale WAL into the new file). Otherwise link it, and return False
        when an index appeared meanwhile (left as it is).
        """
        directory = os.path.dirname(self.path)
        # A name the sweeper knows: a temporary file a crash leaves is removed.
        temp = os.path.join(directory, f"{TEMP_PREFIX}{secrets.token_hex(8)}")
        old_umask = os.umask(0o077)  # the index names session ids: as private as they are
        try:
            conn = apsw.Connection(temp)
        finally:
            os.umask(old_umask)
        try:
            try:
                conn.execute(_SCHEMA)
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO entry VALUES (?, ?, ?, ?)", entries)
                conn.execute("COMMIT")
                conn.execute("PRAGMA journal_mode=WAL").fetchall()
            finally:
                conn.close()
            if replace:
                self.discard()
                os.rename(temp, self.path)
                return True
            try:
                os.link(temp, self.path)
            except FileExistsError:
                return False
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def discard(self) -> None:
        """Remove the index file and its side files (before a rebuild)."""
        for name in INDEX_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(os.path.dirname(self.path), name))

    def exists(self) -> bool:
        """True when the index file exists (it may still be damaged)."""
        return os.path.lexists(self.path)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[apsw.Connection]:
        try:
            with self._connection() as conn:
                yield conn
        except (apsw.CorruptError, apsw.NotADBError) as exc:
            raise IndexDamaged(f"{type(exc).__name__}: {exc}") from exc

    @contextlib.contextmanager
    def _writing(self) -> Iterator[apsw.Connection]:
        with self._reading() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(apsw.Error):
                    conn.execute("ROLLBACK")
                raise
