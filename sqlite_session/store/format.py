"""The session file format: names, schema, the statements that write it, its records.

``<directory>/<session id>.session`` is a SQLite database with page size 1024 (a small
session is 4 pages, exactly one 4 KiB tmpfs page), ``application_id``
:data:`APPLICATION_ID` and ``user_version`` :data:`FORMAT_VERSION`, and two tables:
``meta`` (one row: expiry, :class:`FileState`, permanent flag, change counter, key count,
then, since format 2, the session's :class:`Account`; a write within ``refresh_fraction``
of the expiry's last move stores no more than its key count, see
:meth:`Meta.keeps_expiry`) and ``kv`` (one row per session key: the change counter as
its last write left it, then the encoded value; the keys also sit in the primary key's
index). The expiry is also mirrored into the file's mtime, as an
upper bound the sweeper can trust: see :mod:`.mirror`. The rows are read, each cell
checked, by :mod:`.rows`.

Format 2 added the :class:`Account` columns at the end of ``meta`` (when the session was
created or last regenerated, and the user it belongs to with its opaque handle): new
columns rather than a new table, because a table takes a page of its own and a small
session would no longer fit one 4 KiB tmpfs page. The statements of every request name
the first five columns only, so they read format 1 and 2 alike; a format-1 file (written
by version 0.1) is read and written as it is, and gains the columns, in place, the first
time a user is recorded in it (:func:`.rows.write_account`).

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

from enum import Enum, IntEnum
from typing import Any, NamedTuple, TypeVar

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
ACCOUNT_COLUMNS = (
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
ADDED_COLUMNS = ((2, ACCOUNT_COLUMNS), (3, (_ANONYMOUS_COLUMN,)), (4, (_MIRROR_COLUMN,)))

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
    ",\n    ".join(f"{name} {kind}" for _, added in ADDED_COLUMNS for name, kind in added),
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

    def keeps_expiry(self, expires_at: float, lifetime: float, fraction: float) -> bool:
        """True when a request may leave the stored expiry in place of ``expires_at``: a
        move forward by less than ``fraction`` of the ``lifetime`` (``refresh_fraction``).
        An earlier expiry (a shorter lifetime) is always stored."""
        return not expiry_moves(self.expires_at, expires_at, lifetime, fraction) and (
            expires_at >= self.expires_at
        )

    def removable(self, now: float) -> bool:
        """True when the sweeper may remove the session at ``now``.

        A live session or a MOVED tombstone is removable once its expiry has passed; a
        GONE file (a removal interrupted between its commit and its unlink) always is.
        """
        return self.state not in (FileState.LIVE, FileState.MOVED) or self.expires_at <= now


def expiry_moves(stored: float, expires_at: float, lifetime: float, fraction: float) -> bool:
    """True when ``expires_at`` pushes a session's ``stored`` expiry forward by at least
    ``fraction`` of its ``lifetime``: how often requests move an expiry (reads and writes
    alike), so that most of them leave the meta row alone."""
    return expires_at - stored >= lifetime * fraction


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
