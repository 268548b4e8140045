"""The session file format: names, schema, statements and the checked reading of rows.

``<directory>/<session id>.session`` is a SQLite database with page size 1024 (a small
session is 4 pages, exactly one 4 KiB tmpfs page), ``application_id``
:data:`APPLICATION_ID` and ``user_version`` :data:`FORMAT_VERSION`, and two tables:
``meta`` (one row: expiry, :class:`FileState`, permanent flag, change counter, key count,
then, since format 2, the session's :class:`Account`) and ``kv`` (one row per session
key: the change counter of its last write, then the encoded value; the keys also sit in
the primary key's index). The expiry is also mirrored into the file's mtime, as an
upper bound the sweeper can trust: see :mod:`.mirror`.

Format 2 added the :class:`Account` columns at the end of ``meta`` (when the session was
created or last regenerated, and the user it belongs to with its opaque handle): new
columns rather than a new table, because a table takes a page of its own and a small
session would no longer fit one 4 KiB tmpfs page. The statements of every request name
the first five columns only, so they read format 1 and 2 alike; a format-1 file (written
by version 0.1) is read and written as it is, and gains the columns, in place, the first
time a user is recorded in it (:func:`write_account`).

Format 3 added ``meta.anonymous``: 1 in a session that was never established (created
by a plain save: no ``regenerate()``, no user recorded), NULL otherwise. Anonymous
sessions live ``anonymous_lifetime`` and are the ones refused below the free-space
reserve. A file of format 1 or 2 has no such column and counts as established: an older
session may belong to a logged-in user, and it must not be cut short. The statements of
every request read the column and fall back to the first five columns for those files.

Format 4 added ``meta.mirror``: the bound the file's mtime was last set to by a write
(see :mod:`.mirror`), so that a write whose new expiry stays under it knows without a
system call that the mtime covers it. Files of formats 1 to 3 read it as None: their
writes set the mtime every time (and gain the column when they gain a user).
"""

from __future__ import annotations

import time
from enum import Enum, IntEnum
from typing import Any, NamedTuple, TypeVar

import apsw

from .errors import StorageBroken, StorageNewer

_T = TypeVar("_T")

# apsw types every cell as a union of all SQLite values; the schema fixes each column's
# type, so rows are handled as Any rather than narrowed cell by cell.
Rows = list[tuple[Any, ...]]

FORMAT_VERSION = 4
# format 1: no account columns; 2: no anonymous column; 3: no mirror column
READABLE_VERSIONS = (1, 2, 3, 4)
APPLICATION_ID = 0x53514C53  # "SQLS"
PAGE_SIZE = 1024
SUFFIX = ".session"
WAL_FILES = ("-wal", "-shm")  # the files SQLite keeps next to a WAL database while it is open
SIDE_FILES = (*WAL_FILES, "-journal")  # a session of version 0.1 writes through a rollback journal
TEMP_PREFIX = ".tmp-"


class FileState(IntEnum):
    """``meta.state``: what a session file holds (the stored values never change).

    This is the file's layer; :class:`OpenStatus` is what a reader concludes from it.
    """

    LIVE = 0
    GONE = 1  # swept or emptied; unlinked right after the commit that set it
    MOVED = 2  # regenerated: the data now lives under another id; kept briefly as a tombstone


class OpenStatus(Enum):
    """What a reader found at a session's path (see :meth:`Meta.status`).

    ``MOVED``: the session was regenerated under another id (:attr:`FileState.MOVED`).
    """

    LIVE = "live"
    MISSING = "missing"
    EXPIRED = "expired"
    MOVED = "moved"
    BROKEN = "broken"


# Format 2's columns of ``meta``, all nullable (a format-1 file gains them by ALTER TABLE).
_ACCOUNT_COLUMNS = (
    ("established_at", "REAL"),  # created or last regenerated (a login)
    ("handle", "TEXT"),  # the opaque name of the session in its user's list
    ("user", "TEXT"),
    ("agent", "TEXT"),  # the user agent at login, when the app records it
    ("address", "TEXT"),  # the coarse client address at login, likewise
    ("lifetime", "REAL"),  # the idle lifetime at login: last seen = expiry - lifetime
)
# Format 3's column: 1 while the session was never established, else NULL.
_ANONYMOUS_COLUMN = ("anonymous", "INTEGER")
# Format 4's column: the bound the mtime was last set to by a write (see .mirror).
_MIRROR_COLUMN = ("mirror", "REAL")
# The columns each format added to meta after the first, by the version that added them.
_ADDED_COLUMNS = ((2, _ACCOUNT_COLUMNS), (3, (_ANONYMOUS_COLUMN,)), (4, (_MIRROR_COLUMN,)))

SCHEMA = f"""
PRAGMA page_size={PAGE_SIZE};
PRAGMA application_id={APPLICATION_ID};
PRAGMA user_version={FORMAT_VERSION};
BEGIN;
CREATE TABLE meta(
    expires_at REAL NOT NULL,
    state INTEGER NOT NULL,
    permanent INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    nkeys INTEGER NOT NULL,
    ACCOUNT_COLUMNS
);
CREATE TABLE kv(key TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL, value BLOB NOT NULL);
""".replace(
    "ACCOUNT_COLUMNS",
    ",\n    ".join(f"{name} {kind}" for _, added in _ADDED_COLUMNS for name, kind in added),
)
INSERT_META = (
    "INSERT INTO meta(expires_at, state, permanent, seq, nkeys, established_at, anonymous, "
    "mirror) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
UPDATE_META = "UPDATE meta SET expires_at = ?, permanent = ?, seq = ?, nkeys = ?"
UPDATE_KEY = "UPDATE kv SET value = ?, version = ? WHERE key = ?"
# Columns are named: the row layout is (key, version, value). Keys live in the primary
# key's index and the version precedes the value in the row, so finding a key, testing
# it or listing keys never reads a value, and reading one value reads only that value
# (a WITHOUT ROWID table compares whole overflowing rows while searching, which made a
# lookup read the values of the keys it passed on the way).
INSERT_KV = "INSERT INTO kv(key, value, version) VALUES (?, ?, ?)"
# A NULL mirror in a file of format 4 (one that gained the column in place) reads as 0.0:
# a bound that covers nothing, set by the next write.
_READ_META = (
    "SELECT expires_at, state, permanent, seq, nkeys, anonymous, coalesce(mirror, 0.0) FROM meta"
)
# The first access of a request nearly always reads one key: reading it in the same
# statement as the meta row takes one read transaction and one checkout instead of two.
# UNION ALL, not a LEFT JOIN: SQLite built with STAT4 re-prepares that LEFT JOIN at every
# execution (its plan depends on the bound key); two scalar subqueries would walk a large
# value's pages twice.
_READ_META_AND_KEY = (
    "SELECT 0, expires_at, state, permanent, seq, nkeys, anonymous, coalesce(mirror, 0.0) "
    "FROM meta UNION ALL SELECT 1, value, version, NULL, NULL, NULL, NULL, NULL FROM kv "
    "WHERE key = ?"
)
_CHECK_HEADER = (
    "SELECT application_id, user_version FROM pragma_application_id, pragma_user_version"
)


class Meta(NamedTuple):
    """The ``meta`` row of a session file."""

    expires_at: float
    state: int  # a FileState value in a file of ours
    permanent: bool
    seq: int
    nkeys: int
    anonymous: bool = False  # never established (see the module docstring)
    mirror: float | None = None  # the mtime's bound set by a write; None: format < 4

    @property
    def bound(self) -> float:
        """What the mtime must be at least: the expiry, or the higher bound set by a write."""
        return self.expires_at if self.mirror is None else max(self.expires_at, self.mirror)

    def status(self, now: float) -> OpenStatus:
        """What the row means to a reader at ``now``: LIVE, MOVED or EXPIRED."""
        if self.state == FileState.MOVED:
            return OpenStatus.MOVED
        if self.state != FileState.LIVE or self.expires_at <= now:
            return OpenStatus.EXPIRED
        return OpenStatus.LIVE

    def removable(self, now: float) -> bool:
        """True when the sweeper may remove the session at ``now``.

        A live session or a MOVED tombstone is removable once its expiry has passed; a
        GONE file (a removal interrupted between its commit and its unlink) always is.
        """
        return self.state not in (FileState.LIVE, FileState.MOVED) or self.expires_at <= now


def _rows(conn: apsw.Connection, query: str, *args: Any) -> Rows:
    """``query``'s rows; in a file of an older format, the columns it lacks read as NULL."""
    try:
        return conn.execute(query, args).fetchall()
    except apsw.SQLError:
        version = file_version(conn)
        if version >= FORMAT_VERSION:
            raise
        return conn.execute(_for_version(query, version), args).fetchall()


def _for_version(query: str, version: int) -> str:
    """``query`` with NULL in place of the columns added after format ``version``."""
    for added_in, columns in _ADDED_COLUMNS[1:]:  # (account columns are not read here)
        if version < added_in:
            for name, _ in columns:
                query = query.replace(f"coalesce({name}, 0.0)", "NULL").replace(name, "NULL")
    return query


def read_meta(conn: apsw.Connection) -> Meta:
    return _meta_of(_rows(conn, _READ_META))


def read_meta_and_key(conn: apsw.Connection, key: str) -> tuple[Meta, tuple[bytes, int] | None]:
    """The meta row and one key's value and version, in one statement."""
    metas: list[Any] = []
    found = None
    for row in _rows(conn, _READ_META_AND_KEY, key):
        if row[0] == 0:
            metas.append(row[1:])
        elif found is None:
            found = (typed(row[1], bytes), typed(row[2], int))
    return _meta_of(metas), found


def check_format(conn: apsw.Connection) -> None:
    """Refuse a file that is not a session file of this format (first statement on it)."""
    header = conn.execute(_CHECK_HEADER).fetchall()
    app_id, version = header[0] if header else (None, None)
    if app_id == APPLICATION_ID and int(version or 0) > FORMAT_VERSION:
        raise StorageNewer(f"session file of a newer format: {header}")
    if app_id != APPLICATION_ID or version not in READABLE_VERSIONS:
        raise StorageBroken(f"not a session file of format {READABLE_VERSIONS}: {header}")


def _meta_of(rows: list[Any]) -> Meta:
    """The ``meta`` row, checked to hold what our schema stores (else StorageBroken)."""
    if len(rows) == 1:  # the usual case, checked in one expression (every request)
        expires_at, state, permanent, seq, nkeys, anonymous, mirror = rows[0]
        if (
            type(expires_at) is float
            and type(state) is int
            and type(permanent) is int
            and type(seq) is int
            and type(nkeys) is int
            and (mirror is None or type(mirror) is float)
        ):
            return Meta(expires_at, state, permanent != 0, seq, nkeys, anonymous == 1, mirror)
    return _checked_meta(rows)


def _checked_meta(rows: list[Any]) -> Meta:
    """:func:`_meta_of` for a row of unusual types: accepted if usable, else StorageBroken."""
    if len(rows) != 1:
        raise StorageBroken(f"meta table holds {len(rows)} rows")
    expires_at, state, permanent, seq, nkeys, anonymous, mirror = rows[0]
    if not isinstance(expires_at, (int, float)):
        raise StorageBroken(f"expiry is a {type(expires_at).__name__}")
    return Meta(
        float(expires_at),
        typed(state, int),
        bool(typed(permanent, int)),
        typed(seq, int),
        typed(nkeys, int),
        anonymous == 1,
        _seconds(mirror),
    )


class Account(NamedTuple):
    """Format 2's columns of ``meta``: the session's age and the user it belongs to.

    All None in a format-1 file; ``user`` and ``handle`` are None in a session that
    belongs to nobody (yet).
    """

    established_at: float | None = None
    handle: str | None = None
    user: str | None = None
    agent: str | None = None
    address: str | None = None
    lifetime: float | None = None


_READ_ACCOUNT = f"SELECT {', '.join(name for name, _ in _ACCOUNT_COLUMNS)} FROM meta"


def file_version(conn: apsw.Connection) -> int:
    """The format version of the session file of ``conn`` (one of READABLE_VERSIONS)."""
    return typed(conn.execute("PRAGMA user_version").fetchall()[0][0], int)


def read_account(conn: apsw.Connection) -> Account:
    """The session's :class:`Account` (all None in a format-1 file)."""
    if file_version(conn) < 2:
        return Account()
    rows = conn.execute(_READ_ACCOUNT).fetchall()
    if len(rows) != 1:
        raise StorageBroken(f"meta table holds {len(rows)} rows")
    established_at, handle, user, agent, address, lifetime = rows[0]
    return Account(
        _seconds(established_at),
        _text(handle),
        _text(user),
        _text(agent),
        _text(address),
        _seconds(lifetime),
    )


def _text(value: object) -> str | None:
    """A nullable TEXT column, checked (StorageBroken for any other type)."""
    return None if value is None else typed(value, str)


def _seconds(value: object) -> float | None:
    """A nullable REAL column, checked (StorageBroken for any other type)."""
    if value is None:
        return None
    if not isinstance(value, (int, float)):
        raise StorageBroken(f"expected a number, found {type(value).__name__}")
    return float(value)


def write_account(conn: apsw.Connection, account: Account) -> None:
    """Store ``account`` in the write transaction open on ``conn``; a session that
    gains a user is established from now on (no longer anonymous).

    A file of an older format gains the missing columns first (and becomes format 4);
    the ``established_at`` of a format-1 file, unknown, becomes the moment of this write.
    """
    if file_version(conn) < FORMAT_VERSION:
        present = {row[1] for row in conn.execute("PRAGMA table_info(meta)")}
        for _, added in _ADDED_COLUMNS:
            for name, kind in added:
                if name not in present:
                    conn.execute(f"ALTER TABLE meta ADD COLUMN {name} {kind}")
        conn.execute(f"PRAGMA user_version={FORMAT_VERSION}")
    assignments = ", ".join(f"{name} = ?" for name, _ in _ACCOUNT_COLUMNS)
    if account.established_at is None:
        account = account._replace(established_at=time.time())
    if account.user is not None:
        assignments += ", anonymous = NULL"
    conn.execute(f"UPDATE meta SET {assignments}", tuple(account))


def read_value(conn: apsw.Connection, key: str) -> tuple[bytes, int] | None:
    """One key's value and version, or None when the key is absent."""
    rows = conn.execute("SELECT value, version FROM kv WHERE key = ?", (key,)).fetchall()
    return (typed(rows[0][0], bytes), typed(rows[0][1], int)) if rows else None


def read_version(conn: apsw.Connection, key: str) -> int | None:
    """One key's version (its value is not read), or None when the key is absent."""
    rows = conn.execute("SELECT version FROM kv WHERE key = ?", (key,)).fetchall()
    return typed(rows[0][0], int) if rows else None


def read_keys(conn: apsw.Connection) -> list[str]:
    """The session's keys (values are not read)."""
    return [typed(row[0], str) for row in conn.execute("SELECT key FROM kv")]


def read_items(conn: apsw.Connection) -> dict[str, bytes]:
    """Every key and its value."""
    rows: Rows = conn.execute("SELECT key, value FROM kv").fetchall()
    return {typed(key, str): typed(value, bytes) for key, value in rows}


def typed(value: object, kind: type[_T]) -> _T:
    """A value read from a session file, checked to have the type our schema stores there.

    A file edited by hand or by a foreign program can hold anything in any column; it
    is reported as broken instead of failing somewhere later with a ``TypeError``.
    """
    if isinstance(value, kind):
        return value
    raise StorageBroken(f"expected {kind.__name__}, found {type(value).__name__}")
