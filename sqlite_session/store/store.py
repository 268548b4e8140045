"""One SQLite file per session: the only module that speaks SQLite.

File format
    ``<directory>/<session id>.session``, a SQLite database with page size 1024 (a small
    session is 4 pages, exactly one 4 KiB tmpfs page), ``application_id``
    :data:`APPLICATION_ID` and ``user_version`` :data:`FORMAT_VERSION`, and two tables:
    ``meta`` (one row: expiry, state, permanent flag, change counter, key count) and
    ``kv`` (one row per session key: the change counter of its last write, then the
    encoded value; the keys also sit in the primary key's index). The expiry is also
    mirrored into the file's mtime, so the sweeper can skip a fresh session with a
    ``stat``. The mirror is only a hint that may trail the expiry, never run ahead of it:
    a save updates it only once it trails by ``refresh_fraction`` of the lifetime (or
    when the save shortens the expiry), and a crash between commit and ``utime`` leaves
    it behind. A trailing mtime merely makes the file a candidate that the sweeper
    opens, re-checks and catches up.

Journal mode
    WAL, with ``synchronous=OFF``. A write transaction on an open connection costs 12-14
    µs in WAL against 42 µs with the rollback journal (``DELETE``), and a read 5 against
    11 µs (tmpfs, apsw 3.54): a rollback-journal commit creates, writes and deletes a
    ``-journal`` file, and every transaction re-reads the file's change counter, while a
    WAL commit appends to an open file and readers check shared memory. A process killed
    in the middle of a commit leaves a WAL whose incomplete transaction the next
    connection ignores, so a session always holds the old or the new values of a save
    (``tests/test_crash.py`` kills writers at random moments to prove it). ``MEMORY``
    and ``OFF`` journals corrupt the file in that case (that test failed in each of
    three runs), so they are not options. ``synchronous=OFF``: on tmpfs an fsync
    protects nothing (power loss empties the tmpfs anyway) and a process crash loses
    nothing that has reached the kernel.

    The price: while a connection to a session is open (the per-process pool keeps the
    recently used ones), SQLite keeps a 32 KiB ``-shm`` file and a ``-wal`` file of
    about 20 KiB (at most :data:`WAL_SIZE_LIMIT`, 32 KiB, after any commit, however
    large: :data:`WAL_CHECKPOINT_PAGES`, :meth:`SessionStore._checkpoint_wal`) next to
    it. The last connection to close folds the WAL back into the file and deletes both,
    so an idle session is one file of one 4 KiB tmpfs page. New files are built without a journal
    under a temporary name and switched to WAL before the rename. A session file
    written by version 0.1 (rollback journal) is still read and written as it is.

Removal and hand-over
    This package never unlinks a session file while someone may still write to it
    unnoticed (a file deleted by hand is noticed within :data:`REVALIDATE_AFTER`).
    Whoever removes one (the sweeper, a request that emptied it, a ``regenerate()``)
    takes the write lock (``BEGIN IMMEDIATE``), re-checks, sets ``meta.state`` to
    :data:`GONE` (or :data:`MOVED`) and commits before unlinking. Every write begins the
    same way and checks the state first, so a request still holding the old inode sees
    the tombstone and treats its session as expired instead of writing into a file
    nobody will ever read again. An expired session is dead for good: a write never
    revives a row whose expiry has passed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
import stat
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple, TypeVar

import apsw

from ..errors import (
    SessionConflictError,
    SessionError,
    SessionLockTimeout,
    SessionRegenerateError,
    SessionStorageFull,
    SessionStorageUnavailable,
    SessionTooLarge,
)
from .directory import recreate_directory

log = logging.getLogger("sqlite_session")
_T = TypeVar("_T")

# apsw types every cell as a union of all SQLite values; the schema fixes each column's
# type, so rows are handled as Any rather than narrowed cell by cell.
Rows = list[tuple[Any, ...]]

FORMAT_VERSION = 1
APPLICATION_ID = 0x53514C53  # "SQLS"
PAGE_SIZE = 1024
# Checkpoint a session's WAL back into its file once it holds this many pages. SQLite's
# default (1,000) let the WAL of every open session grow to 1 MiB of tmpfs; at 16 it
# stays at 20 KiB and a small write costs 26 µs (64: 25 µs and 68 KiB; 4: 30 µs).
WAL_CHECKPOINT_PAGES = 16
# A checkpoint rewinds the WAL without shrinking it, and the rewind comes only with the
# next write: after one large write the WAL kept that size (1 MiB after a 1 MiB value)
# while the session stayed open. A commit that leaves more frames than fit in this is
# checkpointed and truncated at once (see _checkpoint_wal); a rewind truncates to it.
WAL_SIZE_LIMIT = 32 * 1024
WAL_HEADER_SIZE = 32
WAL_FRAME_SIZE = PAGE_SIZE + 24
SUFFIX = ".session"
WAL_FILES = ("-wal", "-shm")  # the files SQLite keeps next to a WAL database while it is open
TEMP_PREFIX = ".tmp-"

# meta.state values
LIVE = 0
GONE = 1  # swept or emptied; unlinked right after the commit that set it
MOVED = 2  # regenerated: the data now lives under another id; kept briefly as a tombstone

_SCHEMA = f"""
PRAGMA page_size={PAGE_SIZE};
PRAGMA application_id={APPLICATION_ID};
PRAGMA user_version={FORMAT_VERSION};
BEGIN;
CREATE TABLE meta(
    expires_at REAL NOT NULL,
    state INTEGER NOT NULL,
    permanent INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    nkeys INTEGER NOT NULL
);
CREATE TABLE kv(key TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL, value BLOB NOT NULL);
"""
_UPDATE_KEY = "UPDATE kv SET value = ?, version = ? WHERE key = ?"
# Columns are named: the row layout is (key, version, value). Keys live in the primary
# key's index and the version precedes the value in the row, so finding a key, testing
# it or listing keys never reads a value, and reading one value reads only that value
# (a WITHOUT ROWID table compares whole overflowing rows while searching, which made a
# lookup read the values of the keys it passed on the way).
_INSERT_KV = "INSERT INTO kv(key, value, version) VALUES (?, ?, ?)"
_OPEN_FLAGS = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_NOFOLLOW
# errno values of a process or system short of a resource for now: the file may be fine.
# (ENOSPC, a full filesystem, is answered by SessionStorageFull.)
_RESOURCE_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.ENOBUFS}
)
# errno values of a file that is there but that this process may never open for writing.
_REFUSED_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.ELOOP,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.EROFS,
        errno.ENXIO,
        errno.ENODEV,
        errno.ETXTBSY,
    }
)
_READ_META = "SELECT expires_at, state, permanent, seq, nkeys FROM meta"

# The first access of a request nearly always reads one key: reading it in the same
# statement as the meta row takes one read transaction (lock, checks, unlock)
# and one connection checkout instead of two. Measured on tmpfs with apsw 3.54: meta then
# key 11 + 13 µs as two statements, 19 µs as one; plus a saved checkout (then an lstat and
# the pool, ~7 µs). UNION ALL, not a LEFT JOIN: this SQLite (built with STAT4) re-prepares the
# LEFT JOIN form at every execution because its plan depends on the bound key (py-spy:
# 28% of the statement's time in sqlite3Reprepare); UNION ALL is never re-prepared and
# reads the row once (two scalar subqueries would walk a large value's pages twice).
_READ_META_AND_KEY = (
    "SELECT 0, expires_at, state, permanent, seq, nkeys FROM meta "
    "UNION ALL SELECT 1, value, version, NULL, NULL, NULL FROM kv WHERE key = ?"
)
_CHECK_HEADER = (
    "SELECT application_id, user_version FROM pragma_application_id, pragma_user_version"
)


class OpenStatus(Enum):
    """What :meth:`SessionStore.open` found at a session's path."""

    LIVE = "live"
    MISSING = "missing"
    EXPIRED = "expired"
    MOVED = "moved"
    BROKEN = "broken"


class Meta(NamedTuple):
    """The ``meta`` row of a session file."""

    expires_at: float
    state: int
    permanent: bool
    seq: int
    nkeys: int

    def removable(self, now: float) -> bool:
        """True when the sweeper may remove the session at ``now``.

        A live session or a MOVED tombstone is removable once its expiry has passed; a
        GONE file (a removal interrupted between its commit and its unlink) always is.
        """
        return self.state not in (LIVE, MOVED) or self.expires_at <= now


class Opened(NamedTuple):
    """Result of :meth:`SessionStore.open`: the status and, for a live session, its meta.

    ``row`` is the value and version of the key passed to :meth:`SessionStore.open`
    (None when the key is absent, or when no key was asked for or the session is not live).
    """

    status: OpenStatus
    meta: Meta | None
    row: tuple[bytes, int] | None = None
    lease: Lease | None = None  # with ``hold=True`` and a live session: its connection


class WriteOutcome(Enum):
    """What a write did to the session file."""

    WRITTEN = "written"
    REMOVED = "removed"  # the session became empty; its file is gone
    MOVED = "moved"  # this write regenerated the session: its data now lives under the new id
    GONE = "gone"  # the session had expired or been removed before this write; nothing written
    SUPERSEDED = "superseded"  # another request regenerated the session; nothing written


@dataclass
class Changes:
    """A batch of changes to one session, applied in one transaction.

    ``expected`` enables strict mode: for each key, the version this request read
    (None: the key was absent); a key not listed must not have been written since the
    change counter ``baseline`` that the request saw when it opened the session.
    """

    upserts: dict[str, bytes] = field(default_factory=dict)
    deletes: set[str] = field(default_factory=set)
    clear: bool = False
    permanent: bool = False
    expires_at: float = 0.0
    expected: dict[str, int | None] | None = None
    baseline: int = 0
    move_to: str | None = None
    moved_grace: float = 0.0
    # How far the file's mtime (the sweeper's hint) may trail the new expiry before the
    # write updates it too: each utime is a system call, and a lagging hint only makes
    # the sweeper open a live file once (it then catches the mtime up).
    mirror_slack: float = 0.0


class StorageBroken(Exception):
    """A session file that is not ours, is damaged or became unreadable (internal).

    Raised as such only for a file that opened and proved not to be a session of ours
    (not a database, corrupt, another format): the sweeper may remove it after its grace.
    A failure to open a file never proves that (see :func:`_open_failure`).
    """


class StorageUnsafe(StorageBroken):
    """A session file that must never be written through (internal).

    A hard link or a symlink at its name or at its ``-wal``/``-shm`` name, something other
    than a regular file there, or a file that opens only read-only. A request carries on
    with a fresh session, as for a damaged file; the sweeper leaves it alone.
    """


class _NoSpace(Exception):
    """Opening a session file failed because the filesystem is full (internal)."""


class StorageNewer(StorageBroken):
    """A session file of ours in a newer format (written by a newer version during an upgrade).

    Callers that merely read treat it like any unreadable file; the sweeper must leave it
    alone rather than delete sessions a newer version of the app is still serving.
    """


# A connection whose block ended with one of these is closed, not pooled (a busy lock
# excepted where it is checked): it may be damaged, or it holds descriptors the process lacks.
_DISCARD_AFTER = (apsw.Error, StorageBroken, SessionStorageUnavailable)
# What a write transaction may meet in a file that opened: see _damage.
_DAMAGE_MET_WRITING = (
    apsw.CorruptError,
    apsw.NotADBError,
    apsw.CantOpenError,
    apsw.ReadOnlyError,
    apsw.NoMemError,
)


class SweepOutcome(Enum):
    """What :meth:`SessionStore.sweep_file` did with one session file."""

    REMOVED = "removed"  # expired: tombstoned, committed and unlinked
    EXPIRED = "expired"  # expired, but a dry run: left in place
    LIVE = "live"  # not expired (or a MOVED tombstone still in its grace period): kept
    BUSY = "busy"  # a request holds its lock: the session is in use, skipped
    VANISHED = "vanished"  # removed by someone else before or while we looked
    BROKEN = "broken"  # opened and proved not a session file of ours: untouched, the caller decides
    NEWER = "newer"  # a session file of a newer format: untouched
    UNSAFE = "unsafe"  # planted (a link, not a regular file) or read-only: untouched
    UNOPENED = "unopened"  # could not be opened now (descriptors, memory...): untouched


# How long a pooled connection is handed out without an ``lstat`` of its path after the
# last one that found the path still naming the connection's inode. The lstat notices a
# file deleted or replaced by hand (removals by this package leave a tombstone in the
# file, which the connection reads either way); it was the costliest step of a pooled
# read: a system call of 2-7 µs on this guest, 9-15% of a request's session work. A
# burst of requests (a page and its XHRs, a client under load) pays for one.
REVALIDATE_AFTER = 0.1


class _Pooled(NamedTuple):
    conn: apsw.Connection
    inode: tuple[int, int]
    mtime: float  # the file's mtime as this process last saw (lstat) or set (utime) it
    checked: float  # time.monotonic() of the last lstat that found the path naming inode


_live_pools: weakref.WeakSet[_ConnectionPool] = weakref.WeakSet()
_fork_hook_installed = False


def _forget_inherited_connections() -> None:
    """In a forked child, before it runs anything else: empty every pool.

    SQLite connections must not cross a fork. This runs from ``os.register_at_fork``
    instead of comparing ``os.getpid()`` at each checkout: getpid is a system call, and
    four per read+write request were 3% of a gunicorn worker's CPU samples (py-spy).
    Each pool also gets a fresh lock, in case another thread held it at the fork.
    """
    for pool in list(_live_pools):
        pool._after_fork()


class _ConnectionPool:
    """A bounded, per-process LRU of idle connections, keyed by file path.

    Opening a connection and loading the schema costs ~110 µs, a read on an open one
    ~10 µs (see DESIGN.md), so idle connections are kept. A connection is handed to one
    thread at a time. The checkout reuses one only while the path still names the inode
    it was opened on (checked at most every :data:`REVALIDATE_AFTER` seconds), which
    catches files deleted or replaced by hand. After a fork the inherited connections
    are dropped: SQLite connections must not cross a fork.
    """

    def __init__(self, capacity: int) -> None:
        global _fork_hook_installed
        self._capacity = capacity
        self._lock = threading.Lock()
        self._idle: dict[str, list[_Pooled]] = {}
        self._size = 0
        if not _fork_hook_installed:  # once per process, at first use: no import side effect
            os.register_at_fork(after_in_child=_forget_inherited_connections)
            _fork_hook_installed = True
        _live_pools.add(self)

    def _after_fork(self) -> None:
        """Forget the connections inherited from the parent: the child must never use them."""
        self._lock = threading.Lock()
        self._idle = {}
        self._size = 0

    def take(self, path: str) -> _Pooled | None:
        """The idle connection to ``path`` given back last, if any."""
        with self._lock:
            idle = self._idle.get(path)
            if not idle:
                return None
            pooled = idle.pop()
            self._size -= 1
            if not idle:
                del self._idle[path]
        return pooled

    def give(self, path: str, pooled: _Pooled) -> None:
        """Keep an idle connection, closing the least recently used beyond capacity."""
        evicted: list[_Pooled] = []
        with self._lock:
            conns = self._idle.pop(path, None) or []
            conns.append(pooled)
            self._idle[path] = conns  # (re)inserted last: dicts keep insertion order
            self._size += 1
            while self._size > self._capacity:
                oldest_path = next(iter(self._idle))
                conns = self._idle[oldest_path]
                evicted.append(conns.pop(0))
                self._size -= 1
                if not conns:
                    del self._idle[oldest_path]
        for old in evicted:
            old.conn.close()

    def forget(self, path: str) -> None:
        """Close the idle connections of a file that has just been removed."""
        with self._lock:
            conns = self._idle.pop(path, [])
            self._size -= len(conns)
        for pooled in conns:
            pooled.conn.close()

    def close_idle(self) -> int:
        """Close every idle connection, giving its descriptors back; returns how many."""
        with self._lock:
            idle, self._idle, self._size = self._idle, {}, 0
        closed = 0
        for conns in idle.values():
            for pooled in conns:
                pooled.conn.close()
                closed += 1
        return closed


class SessionStore:
    """The session files of one directory.

    ``busy_timeout`` (seconds) is how long a write waits for another writer of the same
    session before :class:`SessionLockTimeout`; ``max_session_bytes`` caps a session's
    file through SQLite's ``max_page_count``; ``max_keys`` caps its number of keys.
    ``directory`` is resolved to its real path once, here: SQLite refuses a path with a
    symlink anywhere in it. A directory found gone when a session is created is
    re-created with the interface's checks (``allow_unsafe_directory``).
    """

    def __init__(
        self,
        directory: str,
        *,
        busy_timeout: float = 5.0,
        max_session_bytes: int | None = None,
        max_keys: int | None = None,
        connection_cache_size: int = 128,
        allow_unsafe_directory: bool = False,
    ) -> None:
        self.directory = os.path.realpath(directory)
        self._allow_unsafe_directory = allow_unsafe_directory
        self._prefix = os.path.join(directory, "")
        self.busy_timeout = busy_timeout
        self.max_session_bytes = max_session_bytes
        self.max_keys = max_keys
        self._pool = _ConnectionPool(connection_cache_size)

    # -- paths ---------------------------------------------------------------------

    def path_for(self, sid: str) -> str:
        """The file of session ``sid`` (which the caller has validated as an id)."""
        return self._prefix + sid + SUFFIX  # os.path.join: 1 µs, several times a request

    # -- connections ---------------------------------------------------------------

    def _configure(self, conn: apsw.Connection) -> None:
        conn.setbusytimeout(int(self.busy_timeout * 1000))
        conn.execute("PRAGMA synchronous=OFF")
        conn.set_wal_hook(self._checkpoint_wal)  # (in place of PRAGMA wal_autocheckpoint)
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        if self.max_session_bytes is not None:
            pages = max(4, self.max_session_bytes // PAGE_SIZE)
            conn.execute(f"PRAGMA max_page_count={pages}")

    def _checkpoint_wal(self, conn: apsw.Connection, name: str, frames: int) -> int:
        """After each commit: SQLite's autocheckpoint, plus a truncation of a large WAL.

        The truncating checkpoint never waits for a reader of an older snapshot: it gives
        up, and the next write rewinds the WAL to WAL_SIZE_LIMIT. Errors are swallowed:
        the commit has happened, and a failed checkpoint loses nothing.
        """
        if frames * WAL_FRAME_SIZE + WAL_HEADER_SIZE > WAL_SIZE_LIMIT:
            conn.setbusytimeout(0)
            try:
                with contextlib.suppress(apsw.Error):
                    conn.wal_checkpoint(name, apsw.SQLITE_CHECKPOINT_TRUNCATE)
            finally:
                conn.setbusytimeout(int(self.busy_timeout * 1000))
        elif frames >= WAL_CHECKPOINT_PAGES:
            with contextlib.suppress(apsw.Error):
                conn.wal_checkpoint(name)
        return apsw.SQLITE_OK

    def _open_connection(self, path: str, st: os.stat_result) -> apsw.Connection:
        """A configured connection to a session file of ours, or the reason there is none.

        ``st`` is the file's lstat, taken by the caller. Raises FileNotFoundError (no
        file), :class:`StorageBroken` (opened, and not a session of ours),
        :class:`StorageUnsafe` (planted or read-only), ``_NoSpace``, ``apsw.BusyError``
        or :class:`SessionStorageUnavailable` (any other failure to open: the file may
        be fine). See :func:`_open_failure`.
        """
        _refuse_planted(path, st)
        try:
            conn = apsw.Connection(path, flags=_OPEN_FLAGS)
        except apsw.BusyError:
            raise
        except apsw.Error as exc:
            raise _open_failure(exc, path, 0) from exc
        try:
            if conn.readonly("main"):  # SQLite falls back to read-only when it must
                raise StorageUnsafe("the session file opens only read-only")
            self._configure(conn)
            _check_format(conn)
        except apsw.BusyError:
            conn.close()
            raise
        except apsw.Error as exc:
            no_space = self._out_of_space(exc, conn)  # no room for its -shm or -wal file
            failure = _open_failure(exc, path, conn.system_errno)
            conn.close()
            raise (_NoSpace(str(exc)) if no_space else failure) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _freeing_descriptors(self, attempt: Callable[[], _T]) -> _T:
        """``attempt()``, run once more after the pool closed its idle connections if it
        failed for lack of descriptors or memory (each connection holds up to three)."""
        try:
            return attempt()
        except SessionStorageUnavailable as exc:
            closed = self._pool.close_idle()
            log.warning("session storage unavailable (%s); %d idle connections closed", exc, closed)
            if not closed:
                raise
        return attempt()

    def _open_snapshot(self, path: str) -> apsw.Connection:
        """A read-only connection that needs no ``-shm`` file, for a full filesystem.

        A WAL database's first connection creates a 32 KiB ``-shm`` file; with no room for
        it, the session would be unreadable until space is freed. Failing to create it
        means no connection is open anywhere (an open one keeps it). If the ``-wal`` holds
        no frame either, every committed change is in the database file itself, which
        ``immutable=1`` reads without locks or ``-shm``. A ``-wal`` with frames (left by
        a process that crashed with the session open) may hold the latest commits, a
        logout's tombstone among them: then this is :class:`SessionStorageFull`, never
        an older state. Writes need space anyway and fail with it too.
        """
        if not _wal_is_empty(path):
            log.error("session filesystem full: %s cannot be opened", _short_id(path))
            raise SessionStorageFull("no space left on the session filesystem to open a session")
        uri = "file:" + urllib.parse.quote(path) + "?immutable=1"
        flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI | apsw.SQLITE_OPEN_NOFOLLOW
        conn = apsw.Connection(uri, flags=flags)
        try:
            _check_format(conn)
        except BaseException:
            conn.close()
            raise
        log.warning("session filesystem full: %s read without locks", _short_id(path))
        return conn

    def _connection(self, path: str, *, write: bool = False) -> _Checkout:
        """A connection to ``path`` for a ``with`` block, or None if it is missing.

        Raises :class:`StorageBroken` for anything at ``path`` that is not a readable
        session file of ours (a directory, a symlink, garbage, a foreign database). The
        file is never followed through a symlink and never modified in that case.
        A file that stays locked past the busy timeout is not broken, only busy: that
        raises :class:`SessionLockTimeout`, so a slow writer never makes a request
        drop the user's session for a fresh one. On a full filesystem a reader gets a
        snapshot (see :meth:`_open_snapshot`) and a writer :class:`SessionStorageFull`.
        """
        return _Checkout(self, path, write)

    # -- reading -------------------------------------------------------------------

    def open(self, sid: str, key: str | None = None, *, hold: bool = False) -> Opened:
        """Look at session ``sid``: is it live, and if so its meta row (and ``key``'s row).

        With ``hold``, a live session's connection stays checked out as
        ``Opened.lease`` for the caller's later reads and writes, until it releases it.
        Damaged, foreign or planted files are logged and reported as
        :attr:`OpenStatus.BROKEN`; they are left untouched for the sweeper. A file that
        cannot be opened for now raises :class:`SessionStorageUnavailable`: never BROKEN.
        """
        path = self.path_for(sid)
        row = None
        lease = None
        try:
            with (checkout := self._connection(path)) as conn:
                if conn is None:
                    return Opened(OpenStatus.MISSING, None)
                if key is None:
                    meta = _on_open_file(conn, _read_meta)
                else:
                    meta, row = _on_open_file(conn, lambda c: _read_meta_and_key(c, key))
                if meta.state == MOVED:
                    return Opened(OpenStatus.MOVED, None)
                if meta.state != LIVE or meta.expires_at <= time.time():
                    return Opened(OpenStatus.EXPIRED, None)
                if hold and checkout.writable:  # a full-disk snapshot is not held
                    lease = checkout.keep(meta)
        except (StorageBroken, apsw.Error) as exc:
            log.warning("ignoring unreadable session file %s: %s", _short_id(path), exc)
            return Opened(OpenStatus.BROKEN, None)
        return Opened(OpenStatus.LIVE, meta, row, lease)

    def read(self, sid: str, key: str, lease: Lease | None = None) -> tuple[bytes, int] | None:
        """The stored value and version of one key, or None if the key is absent."""
        return self._query(sid, lambda conn: _read(conn, key), lease)

    def version(self, sid: str, key: str, lease: Lease | None = None) -> int | None:
        """The version of one key (the value is not read), or None if the key is absent."""
        return self._query(sid, lambda conn: _version(conn, key), lease)

    def keys(self, sid: str, lease: Lease | None = None) -> list[str]:
        """The session's keys (values are not read)."""
        return self._query(sid, _keys, lease)

    def _query(
        self, sid: str, query: Callable[[apsw.Connection], _T], lease: Lease | None
    ) -> _T:
        """Run ``query`` on ``lease`` or a connection to ``sid``; a failure is StorageBroken."""
        if lease is not None and lease.active:
            return lease.query(query)
        with self._connection(self.path_for(sid)) as conn:
            if conn is None:
                raise StorageBroken("the session file has disappeared")
            return _on_open_file(conn, query)

    # -- writing -------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(
        self, sid: str, timeout: float | None = None, lease: Lease | None = None
    ) -> Iterator[Transaction]:
        """Hold session ``sid``'s write lock for the block; commit when it ends cleanly.

        Other requests can still read the session meanwhile; writers wait (up to
        ``timeout`` seconds, default ``busy_timeout``) and then get
        :class:`SessionLockTimeout`. ``tx.status`` tells whether the session was still
        live when the lock was taken.
        """
        path = self.path_for(sid)
        if lease is not None and lease.active:
            checkout: _Borrowed | _Checkout = lease.borrow()
        else:
            checkout = self._connection(path, write=True)
        with checkout as conn:
            if conn is None:
                yield Transaction(self, sid, None, None)
                return
            if timeout is not None:
                conn.setbusytimeout(int(timeout * 1000))
            try:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except apsw.BusyError as exc:
                    waited = self.busy_timeout if timeout is None else timeout
                    raise _lock_timeout(path, waited) from exc
                tx = Transaction(self, sid, conn, checkout.meta_now(conn), checkout.mtime)
                try:
                    yield tx
                    conn.execute("COMMIT")
                    tx.flush_if_removing()
                    if tx.touched is not None:  # pooled with the connection: the mtime
                        checkout.mtime = tx.touched  # after_commit is about to set
                except BaseException as exc:
                    no_space = self._out_of_space(exc, conn)  # before ROLLBACK resets errno
                    with contextlib.suppress(apsw.Error):
                        conn.execute("ROLLBACK")
                    if no_space:
                        raise self._full_error(path, None, "") from exc
                    raise
            except _DAMAGE_MET_WRITING as exc:
                # CantOpen: a journal or WAL file that cannot be opened (a planted symlink:
                # SQLite never follows one, or no descriptor left) on a disk that is not full.
                raise _damage(exc, conn) from exc
            finally:
                if timeout is not None:
                    with contextlib.suppress(apsw.Error):  # (closed if the block broke it)
                        conn.setbusytimeout(int(self.busy_timeout * 1000))
        if tx.after_commit() and lease is not None:
            lease.release(broken=True)  # its file is gone: never back into the pool

    def write(self, sid: str, changes: Changes, lease: Lease | None = None) -> WriteOutcome:
        """Apply ``changes`` to an existing session in one transaction."""
        with self.transaction(sid, lease=lease) as tx:
            return tx.apply(changes)

    def create(self, sid: str, changes: Changes, *, seq: int = 0) -> None:
        """Write a new session file for ``sid`` holding ``changes.upserts``.

        The file is built under a temporary name and renamed into place, so a session
        file is never seen half-initialised and a crash leaves only a ``.tmp-`` file.
        Short of descriptors, it is tried again once the pool has given its idle ones
        back. A directory found gone is re-created (with the interface's checks) and the
        file built again; so is a file removed while it was built (by hand: a sweeper
        never removes a temporary file whose creator holds its lock). A second failure
        is a :class:`SessionError`, never a raw ``OSError``.
        """

        def build() -> None:
            self._build(sid, changes, seq)

        try:
            return self._freeing_descriptors(build)
        except (FileNotFoundError, NotADirectoryError):
            if not os.path.isdir(self.directory):
                recreate_directory(self.directory, allow_unsafe=self._allow_unsafe_directory)
        try:
            return build()
        except FileNotFoundError as exc:
            raise SessionStorageUnavailable(
                "the session file being created was removed meanwhile"
            ) from exc

    def _build(self, sid: str, changes: Changes, seq: int) -> None:
        """One attempt of :meth:`create`, under the creator's lock on the temporary file."""
        temp = os.path.join(self.directory, f"{TEMP_PREFIX}{secrets.token_hex(8)}")
        conn: apsw.Connection | None = None
        fd: int | None = None
        try:
            fd = _create_locked(temp)
            conn = apsw.Connection(temp, flags=_OPEN_FLAGS)
            self._configure(conn)
            key = ""
            try:
                # The file is invisible until the rename, so it needs no journal while it
                # is built (a crash leaves a .tmp- file for the sweeper): 162 µs against
                # 266 µs with one. It is switched to WAL once complete (17 µs more).
                conn.execute("PRAGMA journal_mode=OFF")
                conn.execute(_SCHEMA)
                conn.execute(
                    "INSERT INTO meta VALUES (?, ?, ?, ?, ?)",
                    (changes.expires_at, LIVE, int(changes.permanent), seq, len(changes.upserts)),
                )
                for key, value in changes.upserts.items():
                    conn.execute(_INSERT_KV, (key, value, seq))
                _check_key_count(self.max_keys, len(changes.upserts), key)
                conn.execute("COMMIT")
                conn.execute("PRAGMA journal_mode=WAL")
            except apsw.FullError as exc:
                raise self._full_error(temp, changes, key) from exc
            conn.close()
            conn = None
            os.utime(fd, (changes.expires_at, changes.expires_at))
            os.rename(temp, self.path_for(sid))
        except BaseException as exc:
            no_space = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
            short = _short_of_resources(exc, conn, temp)
            if conn is not None:
                no_space = no_space or self._out_of_space(exc, conn)
                conn.close()
            if fd is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
            if isinstance(exc, SessionError):
                raise
            if no_space:
                raise self._full_error(temp, None, "") from exc
            if short:
                raise SessionStorageUnavailable(f"cannot create a session file: {short}") from exc
            raise
        finally:
            if fd is not None:  # after SQLite's close: its own locks are on other descriptors
                os.close(fd)

    def _out_of_space(self, exc: BaseException, conn: apsw.Connection) -> bool:
        """Whether a failed write ran out of blocks or inodes on the session filesystem.

        A journal, ``-wal`` or ``-shm`` that cannot be created for lack of an inode is a
        ``CantOpenError`` whose errno SQLite has already overwritten (it retries
        read-only), so the filesystem is asked.
        """
        if isinstance(exc, apsw.FullError):
            return True
        if not isinstance(exc, (apsw.CantOpenError, apsw.IOError)):
            return False
        if conn.system_errno == errno.ENOSPC:
            return True
        try:
            fs = os.statvfs(self.directory)
        except OSError:
            return False
        return fs.f_bavail == 0 or fs.f_favail == 0

    def _full_error(self, path: str, changes: Changes | None, key: str) -> SessionError:
        """Tell a session over its size limit from a filesystem that is full.

        SQLite reports both as ``SQLITE_FULL`` and rolls the whole transaction back,
        so the filesystem is asked instead: if it still has room for everything the
        failed write of ``key`` could have needed (the file and a journal as large, the
        new values twice over), space was not the problem and the session's own page
        limit (``max_session_bytes``) stopped it.
        """
        if changes is not None and key and self.max_session_bytes is not None:
            with contextlib.suppress(OSError):
                needed = 2 * os.lstat(path).st_size + 16 * PAGE_SIZE
                needed += 2 * sum(len(value) for value in changes.upserts.values())
                fs = os.statvfs(self.directory)
                if fs.f_bavail * fs.f_frsize >= needed:
                    return SessionTooLarge(
                        key,
                        f"session would exceed {self.max_session_bytes} bytes when writing {key!r}",
                    )
        where = f" while writing {key!r}" if key else ""
        log.error("session storage is full%s: the save was rolled back", where)
        return SessionStorageFull(f"no space left on the session filesystem{where}")

    def remove(self, sid: str) -> None:
        """Forget the pooled connections of a file that has just been unlinked."""
        self._pool.forget(self.path_for(sid))

    # -- sweeping ------------------------------------------------------------------

    def sweep_file(self, sid: str, now: float, *, dry_run: bool = False) -> SweepOutcome:
        """Remove session ``sid`` if it has expired by ``now``, by the removal protocol.

        The write lock is taken with ``busy_timeout`` (keep it short for a sweeper): a
        session whose lock is held is being used by a request, which is about to refresh
        or remove it, so it is skipped (:attr:`SweepOutcome.BUSY`) rather than waited
        for. Under the lock the expiry is read again (the mtime the caller looked at is
        only a hint), the file is tombstoned, committed and then unlinked. A dry run reads
        the expiry without taking the lock and changes nothing. The file is opened
        without following symlinks and without the connection pool (a sweep of a million
        files must not evict the connections that requests use). Damaged or foreign
        files are reported, never modified here; a file that cannot be opened (lack of
        descriptors or memory, permissions) or is planted is never reported as damaged.
        """
        path = self.path_for(sid)
        try:
            conn = self._open_connection(path, os.lstat(path))
        except apsw.BusyError:
            return SweepOutcome.BUSY
        except _NoSpace:
            return self._sweep_without_space(sid, now, dry_run=dry_run)
        except (OSError, StorageBroken, SessionStorageUnavailable) as exc:
            return _sweep_outcome(exc, path)
        try:
            if dry_run:
                meta = _read_meta(conn)
                return SweepOutcome.EXPIRED if meta.removable(now) else SweepOutcome.LIVE
            conn.execute("BEGIN IMMEDIATE")
            meta = _read_meta(conn)
            tx = Transaction(self, sid, conn, meta)
            if not tx.expire_if_due(now):
                # Its mtime trailed its expiry (see Changes.mirror_slack): catch it up, so
                # the next sweep skips the file with a stat again.
                with contextlib.suppress(OSError):
                    os.utime(path, (meta.expires_at, meta.expires_at), follow_symlinks=False)
                return SweepOutcome.LIVE
            try:
                conn.execute("COMMIT")
                tx.flush_if_removing()
            except apsw.FullError:
                # No room even for the tombstone: the session has expired, and an expired
                # session is dead for good (no write revives it), so it goes without one.
                conn.execute("ROLLBACK")
            # Unlinked before the close: a close that deletes the -wal and -shm files
            # left a moment in which another process opening the file found it half
            # taken apart (SQLITE_IOERR_FSTAT). Unlinked first, it finds no file.
            removed = tx.after_commit()
        except apsw.BusyError:
            return SweepOutcome.BUSY
        except apsw.Error as exc:
            return _sweep_outcome(_damage(exc, conn), path)
        except (StorageBroken, SessionStorageUnavailable) as exc:
            return _sweep_outcome(exc, path)
        finally:
            if conn.in_transaction:
                with contextlib.suppress(apsw.Error):
                    conn.execute("ROLLBACK")
            conn.close()
        return SweepOutcome.REMOVED if removed else SweepOutcome.VANISHED

    def _sweep_without_space(self, sid: str, now: float, *, dry_run: bool) -> SweepOutcome:
        """Remove an expired session when the filesystem has no room for its ``-shm`` file.

        A full tmpfs is when the sweeper matters most, yet SQLite cannot open a WAL
        session there. Failing for want of space means no connection is open anywhere
        (an open one keeps a full-size ``-shm``) and none can be opened while the disk
        is full, so the expiry read from the file is current and nobody can write in
        between; an expired session is dead for good (no write ever revives one). So it
        is unlinked without the lock, and with it whatever ``-wal``/``-shm`` the failed
        opens left behind.
        """
        path = self.path_for(sid)
        try:
            conn = self._open_snapshot(path)
            try:
                meta = _read_meta(conn)
            finally:
                conn.close()
        except SessionStorageFull:
            return SweepOutcome.BUSY  # its latest state is in a -wal we cannot open: later
        except (apsw.Error, StorageBroken):
            return SweepOutcome.BROKEN if os.path.lexists(path) else SweepOutcome.VANISHED
        if not meta.removable(now):
            return SweepOutcome.LIVE
        if dry_run:
            return SweepOutcome.EXPIRED
        try:
            os.unlink(path)
        except FileNotFoundError:
            return SweepOutcome.VANISHED
        self.remove(sid)
        _unlink_wal_files(path)
        return SweepOutcome.REMOVED


class _Checkout:
    """The ``with`` block of :meth:`SessionStore._connection` (a class, not a generator:
    a generator-based context manager cost 3-4 µs per use, twice per writing request).

    A connection is taken from the pool (if the path still names the inode it was
    opened on: see :data:`REVALIDATE_AFTER`) or opened; at the end of the block it goes
    back to the pool, unless the block failed with a SQLite error or the connection is a
    full-disk snapshot, or unless :meth:`keep` made it a :class:`Lease` that outlives
    the block.
    """

    __slots__ = (
        "_checked",
        "_conn",
        "_inode",
        "_kept",
        "_path",
        "_reusable",
        "_store",
        "_write",
        "mtime",
    )

    def __init__(self, store: SessionStore, path: str, write: bool) -> None:
        self._store = store
        self._path = path
        self._write = write
        self._conn: apsw.Connection | None = None
        self._inode = (0, 0)
        self._reusable = True
        self._kept = False
        self._checked = 0.0
        self.mtime = 0.0  # the file's mtime when the block began, as far as we know

    def __enter__(self) -> apsw.Connection | None:
        store, path = self._store, self._path
        now = time.monotonic()
        pooled = store._pool.take(path)
        if pooled is not None and now - pooled.checked < REVALIDATE_AFTER:
            self._inode, self.mtime, self._checked = pooled.inode, pooled.mtime, pooled.checked
            self._conn = pooled.conn
            return pooled.conn
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self._discard(pooled)  # deleted by hand
            return None
        planted = _planted("the session file", st)
        if planted:
            self._discard(pooled)
            raise StorageUnsafe(planted)
        self._inode = (st.st_dev, st.st_ino)
        self.mtime = st.st_mtime
        self._checked = now
        if pooled is not None and pooled.inode != self._inode:
            self._discard(pooled)  # the path now names another file
            pooled = None
        conn = pooled.conn if pooled is not None else None
        if conn is None:
            try:
                conn = store._freeing_descriptors(lambda: store._open_connection(path, st))
            except FileNotFoundError:
                return None  # removed between the lstat and the open
            except _NoSpace as exc:
                if self._write:
                    raise store._full_error(path, None, "") from exc
                conn, self._reusable = store._open_snapshot(path), False
            except apsw.BusyError as exc:
                raise _lock_timeout(path, store.busy_timeout) from exc
        self._conn = conn
        return conn

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None and self._kept:
            return  # a lease now: released by its holder
        self.release(
            broken=isinstance(exc, _DISCARD_AFTER) and not isinstance(exc, apsw.BusyError)
        )
        if isinstance(exc, apsw.BusyError):
            raise _lock_timeout(self._path, self._store.busy_timeout) from exc

    def _discard(self, pooled: _Pooled | None) -> None:
        """Close the connections pooled for a path that no longer names their file."""
        if pooled is not None:
            pooled.conn.close()
            self._store._pool.forget(self._path)

    @property
    def writable(self) -> bool:
        """False for a full-disk snapshot (see :meth:`SessionStore._open_snapshot`)."""
        return self._reusable

    def keep(self, meta: Meta) -> Lease:
        """Hold the connection beyond the ``with`` block, for the rest of the request.

        ``meta`` is the meta row the block has just read (see :meth:`Lease.meta_now`).
        """
        assert self._conn is not None
        self._kept = True
        return Lease(self, meta, self._conn.data_version())

    def meta_now(self, conn: apsw.Connection) -> Meta:
        """The meta row, inside a transaction on ``conn``."""
        return _read_meta(conn)

    def release(self, *, broken: bool = False) -> None:
        """End the checkout: the connection goes back to the pool, or is closed if broken."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.in_transaction:
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")
        if self._reusable and not broken:
            self._store._pool.give(
                self._path, _Pooled(conn, self._inode, self.mtime, self._checked)
            )
        else:
            conn.close()


class Lease:
    """One session file's connection, held by a request from its first read to its save.

    Each access used to check a connection out of the pool and back (an ``lstat`` and
    two locked pool operations, ~5 µs): a request that read three keys and saved did it
    four times. Through a lease only the first access does. A session removed by the
    protocol meanwhile shows its tombstone through the held connection as through any
    other; a file deleted by hand is noticed by the first request that checks the path
    again (:data:`REVALIDATE_AFTER`). A lease not released (a request that never reached
    its save) is closed when it is garbage-collected. A connection whose file was
    removed during the request goes back to the pool all the same: until that check it
    shows the tombstone (or, deleted by hand, the deleted file), then it is closed.
    Like the session it belongs to, a lease is used by one thread at a time.
    """

    __slots__ = ("_checkout", "_data_version", "_meta")

    def __init__(self, checkout: _Checkout, meta: Meta, data_version: int) -> None:
        self._checkout = checkout
        self._meta = meta
        self._data_version = data_version

    def meta_now(self, conn: apsw.Connection) -> Meta:
        """The meta row, inside a transaction on the held connection.

        The row read when the lease was taken, if nothing has changed the database
        since: SQLite's data version (``SQLITE_FCNTL_DATA_VERSION``) moves with every
        commit, by this connection or any other process, and is brought up to date when a
        transaction begins (SQLite clears its own page cache on the same signal). That
        saves the write transaction re-reading the row: a statement and its checks,
        2 µs of a write's 25.
        """
        if conn.data_version() == self._data_version:
            return self._meta
        return _read_meta(conn)

    @property
    def active(self) -> bool:
        return self._checkout._conn is not None

    def query(self, query: Callable[[apsw.Connection], _T]) -> _T:
        """Run ``query`` on the held connection; a failure is classified by :func:`_damage`."""
        conn = self._checkout._conn
        assert conn is not None
        try:
            return _on_open_file(conn, query)
        except apsw.BusyError as exc:
            raise _lock_timeout(self._checkout._path, self._checkout._store.busy_timeout) from exc
        except (StorageBroken, SessionStorageUnavailable):
            self.release(broken=True)
            raise

    def borrow(self) -> _Borrowed:
        """The held connection for one transaction block (see :meth:`SessionStore.transaction`)."""
        return _Borrowed(self)

    def release(self, *, broken: bool = False) -> None:
        """Give the connection back (idempotent)."""
        self._checkout.release(broken=broken)


class _Borrowed:
    """A lease's connection used for a ``with`` block, with :class:`_Checkout`'s error rules."""

    __slots__ = ("_lease",)

    def __init__(self, lease: Lease) -> None:
        self._lease = lease

    @property
    def mtime(self) -> float:
        """The file's mtime as last seen or set (the sweeper's hint; see :class:`Changes`)."""
        return self._lease._checkout.mtime

    @mtime.setter
    def mtime(self, value: float) -> None:
        self._lease._checkout.mtime = value  # pooled with the connection when it is given back

    def __enter__(self) -> apsw.Connection | None:
        return self._lease._checkout._conn

    def meta_now(self, conn: apsw.Connection) -> Meta:
        """The meta row, inside a transaction: see :meth:`Lease.meta_now`."""
        return self._lease.meta_now(conn)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        checkout = self._lease._checkout
        conn = checkout._conn
        if conn is not None and conn.in_transaction:
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")
        if isinstance(exc, apsw.BusyError):
            raise _lock_timeout(checkout._path, checkout._store.busy_timeout) from exc
        if isinstance(exc, _DISCARD_AFTER):
            self._lease.release(broken=True)


class Transaction:
    """A session file under its write lock: read consistently, then apply one batch."""

    def __init__(
        self,
        store: SessionStore,
        sid: str,
        conn: apsw.Connection | None,
        meta: Meta | None,
        mtime: float = 0.0,
    ) -> None:
        self._store = store
        self._mtime = mtime
        self._sid = sid
        self._conn = conn
        self.meta = meta
        self._unlink = False
        self._flushed = False
        self.touched: float | None = None  # the mtime after_commit sets

    @property
    def status(self) -> OpenStatus:
        """Whether the session was live when the lock was taken."""
        if self.meta is None:
            return OpenStatus.MISSING
        if self.meta.state == MOVED:
            return OpenStatus.MOVED
        if self.meta.state != LIVE or self.meta.expires_at <= time.time():
            return OpenStatus.EXPIRED
        return OpenStatus.LIVE

    def read(self, key: str) -> tuple[bytes, int] | None:
        """One key's value and version, as of this transaction."""
        return self._query(lambda conn: _read(conn, key))

    def version(self, key: str) -> int | None:
        """One key's version, as of this transaction."""
        return self._query(lambda conn: _version(conn, key))

    def keys(self) -> list[str]:
        """The session's keys, as of this transaction."""
        return self._query(_keys)

    def _query(self, query: Callable[[apsw.Connection], _T]) -> _T:
        """Run ``query`` under the lock; damage met on the way is :class:`StorageBroken`."""
        assert self._conn is not None
        return _on_open_file(self._conn, query)

    def apply(self, changes: Changes) -> WriteOutcome:
        """Apply a batch of changes; the commit happens when the transaction block ends."""
        status = self.status
        if status is OpenStatus.MOVED:
            return WriteOutcome.SUPERSEDED
        if status is not OpenStatus.LIVE:
            return WriteOutcome.GONE
        conn, meta = self._conn, self.meta
        assert conn is not None and meta is not None
        if changes.expected is not None:
            self._check_conflicts(changes)
        seq = meta.seq + 1
        nkeys = meta.nkeys
        if changes.clear:
            conn.execute("DELETE FROM kv")
            nkeys = 0
        for key in changes.deletes:
            conn.execute("DELETE FROM kv WHERE key = ?", (key,))
            nkeys -= conn.changes()
        key = ""
        try:
            for key, value in changes.upserts.items():
                conn.execute(_UPDATE_KEY, (value, seq, key))
                if not conn.changes():
                    conn.execute(_INSERT_KV, (key, value, seq))
                    nkeys += 1
                    _check_key_count(self._store.max_keys, nkeys, key)
        except apsw.FullError as exc:
            raise self._store._full_error(self._store.path_for(self._sid), changes, key) from exc
        if nkeys <= 0:
            self._remove(seq)
            return WriteOutcome.REMOVED
        if changes.move_to is not None:
            self._move(changes, seq)
            return WriteOutcome.MOVED
        conn.execute(
            "UPDATE meta SET expires_at = ?, permanent = ?, seq = ?, nkeys = ?",
            (changes.expires_at, int(changes.permanent), seq, nkeys),
        )
        # The mtime known here may be out of date (see REVALIDATE_AFTER), but it never
        # exceeds the stored expiry: a write that shortens the expiry (a shorter lifetime)
        # always moves it, so that the hint is never left ahead of the new expiry.
        trail = changes.expires_at - self._mtime
        if trail > changes.mirror_slack or trail < 0 or changes.expires_at < meta.expires_at:
            self.touched = changes.expires_at
        return WriteOutcome.WRITTEN

    def refresh(self, expires_at: float) -> bool:
        """Push a live session's expiry to ``expires_at``; False if it is no longer live."""
        if self.status is not OpenStatus.LIVE:
            return False
        assert self._conn is not None
        self._conn.execute("UPDATE meta SET expires_at = ?", (expires_at,))
        self.touched = expires_at
        return True

    def expire_if_due(self, now: float) -> bool:
        """Tombstone the session if its expiry has passed (the sweeper's check under lock)."""
        if self.meta is None or not self.meta.removable(now):
            return False
        assert self._conn is not None
        self._conn.execute("UPDATE meta SET state = ?", (GONE,))
        self._unlink = True
        return True

    def _check_conflicts(self, changes: Changes) -> None:
        assert self._conn is not None and changes.expected is not None
        conflicts = []
        for key in [*changes.upserts, *changes.deletes]:
            current = _version(self._conn, key)
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
        self._conn.execute("UPDATE meta SET state = ?, nkeys = 0, seq = ?", (GONE, seq))
        self._unlink = True

    def _move(self, changes: Changes, seq: int) -> None:
        """Copy the session to ``changes.move_to`` and leave a short-lived tombstone here.

        A batch that cleared the session (a logout that wrote again) removes the old
        file instead: its id must lead to nothing, not to a tombstone.
        """
        assert self._conn is not None and changes.move_to is not None
        rows: Rows = self._conn.execute("SELECT key, value FROM kv").fetchall()
        copy = Changes(
            upserts={_typed(key, str): _typed(value, bytes) for key, value in rows},
            permanent=changes.permanent,
            expires_at=changes.expires_at,
        )
        try:
            self._store.create(changes.move_to, copy, seq=seq)
        except (apsw.Error, OSError) as exc:
            # Not damage to this session (the transaction's handler would take a
            # CantOpenError for that and move the user to a fresh session): the move
            # fails, rolled back, and the session stays as it was under its old id.
            raise SessionRegenerateError(
                f"cannot create the regenerated session's file: {type(exc).__name__}: {exc}"
            ) from exc
        self._conn.execute("DELETE FROM kv")
        if changes.clear:
            self._remove(seq)
            return
        tombstone_until = time.time() + changes.moved_grace
        self._conn.execute(
            "UPDATE meta SET state = ?, expires_at = ?, seq = ?, nkeys = 0",
            (MOVED, tombstone_until, seq),
        )
        self.touched = tombstone_until

    def flush_if_removing(self) -> None:
        """Before a tombstoned file is unlinked: copy its WAL into it.

        Once the file is unlinked SQLite can no longer checkpoint it, so its ``-wal`` and
        ``-shm`` would stay behind until the sweeper's grace period. With the tombstone
        in the file itself they can go with it: a process that opened the file just
        before the unlink and makes new ones reads the tombstone from the file. When a
        reader in another process holds back the checkpoint, they are left to the sweeper.
        """
        if self._unlink and self._conn is not None:
            with contextlib.suppress(apsw.Error):
                frames, copied = self._conn.wal_checkpoint()
                self._flushed = frames == copied

    def after_commit(self) -> bool:
        """Mirror the new expiry into the mtime, or unlink a tombstoned file.

        Returns True when this call unlinked the file (False also when someone else
        removed it after our commit: then there is nothing left to do).
        """
        path = self._store.path_for(self._sid)
        if self._unlink:
            try:
                os.unlink(path)
                unlinked = True
            except FileNotFoundError:  # another remover was first
                unlinked = False
            self._store.remove(self._sid)
            if self._flushed:  # (also when the other remover was first: its close cannot)
                _unlink_wal_files(path)
            return unlinked
        if self.touched is not None:
            with contextlib.suppress(FileNotFoundError):
                os.utime(path, (self.touched, self.touched), follow_symlinks=False)
        return False


def _read_meta(conn: apsw.Connection) -> Meta:
    return _meta_of(conn.execute(_READ_META).fetchall())


def _read_meta_and_key(conn: apsw.Connection, key: str) -> tuple[Meta, tuple[bytes, int] | None]:
    """The meta row and one key's value and version, in one statement."""
    metas: list[Any] = []
    found = None
    for row in conn.execute(_READ_META_AND_KEY, (key,)):
        if row[0] == 0:
            metas.append(row[1:])
        elif found is None:
            found = (row[1], _typed(row[2], int))  # a bad value is dropped when decoded
    return _meta_of(metas), found


def _check_format(conn: apsw.Connection) -> None:
    """Refuse a file that is not a session file of this format (first statement on it)."""
    header = conn.execute(_CHECK_HEADER).fetchall()
    app_id, version = header[0] if header else (None, None)
    if app_id == APPLICATION_ID and int(version or 0) > FORMAT_VERSION:
        raise StorageNewer(f"session file of a newer format: {header}")
    if header != [(APPLICATION_ID, FORMAT_VERSION)]:
        raise StorageBroken(f"not a session file of format {FORMAT_VERSION}: {header}")


def _meta_of(rows: list[Any]) -> Meta:
    """The ``meta`` row, checked to hold what our schema stores (else StorageBroken)."""
    if len(rows) == 1:  # the usual case, checked in one expression (every request)
        expires_at, state, permanent, seq, nkeys = rows[0]
        if (
            type(expires_at) is float
            and type(state) is int
            and type(permanent) is int
            and type(seq) is int
            and type(nkeys) is int
        ):
            return Meta(expires_at, state, permanent != 0, seq, nkeys)
    return _checked_meta(rows)


def _checked_meta(rows: list[Any]) -> Meta:
    """:func:`_meta_of` for a row of unusual types: accepted if usable, else StorageBroken."""
    if len(rows) != 1:
        raise StorageBroken(f"meta table holds {len(rows)} rows")
    expires_at, state, permanent, seq, nkeys = rows[0]
    if not isinstance(expires_at, (int, float)):
        raise StorageBroken(f"expiry is a {type(expires_at).__name__}")
    return Meta(
        float(expires_at),
        _typed(state, int),
        bool(_typed(permanent, int)),
        _typed(seq, int),
        _typed(nkeys, int),
    )


def _read(conn: apsw.Connection, key: str) -> tuple[bytes, int] | None:
    rows = conn.execute("SELECT value, version FROM kv WHERE key = ?", (key,)).fetchall()
    return (_typed(rows[0][0], bytes), _typed(rows[0][1], int)) if rows else None


def _version(conn: apsw.Connection, key: str) -> int | None:
    rows = conn.execute("SELECT version FROM kv WHERE key = ?", (key,)).fetchall()
    return _typed(rows[0][0], int) if rows else None


def _keys(conn: apsw.Connection) -> list[str]:
    return [_typed(row[0], str) for row in conn.execute("SELECT key FROM kv")]


def _typed(value: object, kind: type[_T]) -> _T:
    """A value read from a session file, checked to have the type our schema stores there.

    A file edited by hand or by a foreign program can hold anything in any column; it
    is reported as broken instead of failing somewhere later with a ``TypeError``.
    """
    if isinstance(value, kind):
        return value
    raise StorageBroken(f"expected {kind.__name__}, found {type(value).__name__}")


def _unlink_wal_files(path: str) -> None:
    """Remove the ``-wal`` and ``-shm`` of an unlinked session file (whichever exist)."""
    for sidecar in WAL_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + sidecar)


def _wal_is_empty(path: str) -> bool:
    """True when the session at ``path`` has no ``-wal`` file holding frames."""
    try:
        return os.lstat(path + "-wal").st_size <= WAL_HEADER_SIZE
    except FileNotFoundError:
        return True


def _lock_timeout(path: str, waited: float) -> SessionLockTimeout:
    """The error for a session file that another process kept locked for too long."""
    log.warning("session %s: lock not acquired within %g s", _short_id(path), waited)
    return SessionLockTimeout(f"session lock not acquired within {waited:g} s")


def _short_id(path: str) -> str:
    """Enough of a session's id to find its file; logs need no more of it."""
    return os.path.basename(path)[:8] + "..."


def _check_key_count(max_keys: int | None, nkeys: int, key: str) -> None:
    if max_keys is not None and nkeys > max_keys:
        raise SessionTooLarge(key, f"session would hold {nkeys} keys (limit {max_keys}) at {key!r}")


def _planted(what: str, st: os.stat_result) -> str | None:
    """Why a file of a session must not be used, or None: only a regular file of one link.

    A hard link at a session's name, or at its ``-wal``/``-shm`` name, would make SQLite
    write into a file that also lives outside the directory.
    """
    if not stat.S_ISREG(st.st_mode):
        return f"not opened: {what} is not a regular file (mode {stat.filemode(st.st_mode)})"
    if st.st_nlink != 1:
        return f"not opened: {what} has {st.st_nlink} hard links"
    return None


def _refuse_planted(path: str, st: os.stat_result) -> None:
    """Raise :class:`StorageUnsafe` if the session file at ``path`` (whose lstat is ``st``)
    or one of its side files is planted.

    Checked before SQLite opens anything. SQLite never follows a symlink at the session
    file, but it opens its ``-wal`` and ``-shm`` as it finds them. A file planted between
    this check and the open is possible only for the directory's owner (see
    :mod:`.directory`).
    """
    planted = _planted("the session file", st)
    for suffix in WAL_FILES:
        with contextlib.suppress(FileNotFoundError):
            planted = planted or _planted(f"its {suffix}", os.lstat(path + suffix))
    if planted:
        raise StorageUnsafe(planted)


def _open_failure(exc: apsw.Error, path: str, system_errno: int) -> BaseException:
    """What a failure to open a session file (or to read it the first time) means.

    Only a file that opened and proved not to be a session of ours is
    :class:`StorageBroken` (not a database, corrupt). One refused for what it is
    (read-only, a symlink, a file we may not open) is :class:`StorageUnsafe`; one that
    vanished, FileNotFoundError (a busy lock is not a failure to open). Anything else
    (no descriptor, no memory, an error we cannot explain) is
    :class:`SessionStorageUnavailable`: the file may be fine and is never given up.
    SQLite keeps no errno for a failed open, so the file is then opened once here.
    """
    if isinstance(exc, (apsw.NotADBError, apsw.CorruptError)):
        return StorageBroken(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, apsw.ReadOnlyError):
        return StorageUnsafe("the session file opens only read-only")
    if getattr(exc, "extendedresult", None) == apsw.SQLITE_CANTOPEN_SYMLINK:
        return StorageUnsafe("a symlink in the session file's path")
    code = system_errno or _errno_opening(path)
    if code == errno.ENOENT:
        return FileNotFoundError(code, os.strerror(code))
    if code in _REFUSED_ERRNOS:
        return StorageUnsafe(f"the session file cannot be opened: {os.strerror(code)}")
    reason = os.strerror(code) if code else f"{type(exc).__name__}: {exc}"
    return SessionStorageUnavailable(f"cannot open a session file now: {reason}")


def _damage(exc: apsw.Error, conn: apsw.Connection) -> BaseException:
    """What a failed statement on a session file that opened means (see :func:`_open_failure`).

    Lack of memory or descriptors is :class:`SessionStorageUnavailable`; a file that
    turned out read-only, or a side file refused, :class:`StorageUnsafe`; anything else
    met in a file that opened is damage, :class:`StorageBroken`.
    """
    code = conn.system_errno
    if isinstance(exc, apsw.NoMemError) or code in _RESOURCE_ERRNOS:
        return SessionStorageUnavailable(f"session storage short of resources: {exc}")
    if isinstance(exc, apsw.ReadOnlyError) or (
        isinstance(exc, apsw.CantOpenError) and code in _REFUSED_ERRNOS
    ):
        return StorageUnsafe(f"the session file cannot be written: {exc}")
    return StorageBroken(f"{type(exc).__name__}: {exc}")


def _on_open_file(conn: apsw.Connection, query: Callable[[apsw.Connection], _T]) -> _T:
    """``query(conn)``; a failure other than a busy lock is classified by :func:`_damage`."""
    try:
        return query(conn)
    except apsw.BusyError:
        raise
    except apsw.Error as exc:
        raise _damage(exc, conn) from exc


def _errno_opening(path: str) -> int:
    """The errno that opening ``path`` for reading gives now (0 when it opens)."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK))
    except OSError as exc:
        return exc.errno or 0
    return 0


def _short_of_resources(exc: BaseException, conn: apsw.Connection | None, path: str) -> str:
    """Why ``exc`` is a lack of descriptors or memory, or "" when it is not."""
    if isinstance(exc, apsw.NoMemError):
        return "out of memory"
    if isinstance(exc, OSError):
        code = exc.errno or 0
    elif isinstance(exc, (apsw.CantOpenError, apsw.IOError)):
        code = (conn.system_errno if conn is not None else 0) or _errno_opening(path)
    else:
        return ""
    return os.strerror(code) if code in _RESOURCE_ERRNOS else ""


def _create_locked(path: str) -> int:
    """Create ``path`` and hold an exclusive ``flock`` on it; returns the descriptor.

    The lock marks a file under construction: the sweeper removes a temporary file only
    once it holds that lock itself (its creator finished or died), whatever its grace.
    ``flock`` is independent of SQLite's own (POSIX) locks on the file. A sweeper may
    remove the file between its creation and the lock: then FileNotFoundError.
    """
    flags = os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held, named = os.fstat(fd), os.lstat(path)
        if (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino):
            raise FileNotFoundError(errno.ENOENT, "the new session file was removed", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _sweep_outcome(failure: BaseException, path: str) -> SweepOutcome:
    """The sweeper's verdict on a session file that failed to open or to be read."""
    if not os.path.lexists(path):
        return SweepOutcome.VANISHED  # (also what a file another sweeper removes can give)
    if isinstance(failure, StorageNewer):
        return SweepOutcome.NEWER
    if isinstance(failure, StorageUnsafe):
        return SweepOutcome.UNSAFE
    if isinstance(failure, StorageBroken):
        return SweepOutcome.BROKEN
    return SweepOutcome.UNOPENED
