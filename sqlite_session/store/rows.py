"""The checked reading of a session file's rows, and the writing of its account columns.

Every cell read from a file is checked to have the type the schema of
:mod:`.format` stores there: a file edited by hand or by a foreign program is reported
as :class:`StorageBroken` instead of failing later. A file of an older format is read
with NULL in place of the columns it lacks.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

import apsw

from .errors import StorageBroken, StorageNewer
from .format import (
    ACCOUNT_COLUMNS,
    ADDED_COLUMNS,
    APPLICATION_ID,
    FORMAT_VERSION,
    READABLE_VERSIONS,
    Account,
    Meta,
    Rows,
)

_T = TypeVar("_T")

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
    for added_in, columns in ADDED_COLUMNS[1:]:  # (account columns are not read here)
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


_READ_ACCOUNT = f"SELECT {', '.join(name for name, _ in ACCOUNT_COLUMNS)} FROM meta"


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
        for _, added in ADDED_COLUMNS:
            for name, kind in added:
                if name not in present:
                    conn.execute(f"ALTER TABLE meta ADD COLUMN {name} {kind}")
        conn.execute(f"PRAGMA user_version={FORMAT_VERSION}")
    assignments = ", ".join(f"{name} = ?" for name, _ in ACCOUNT_COLUMNS)
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
