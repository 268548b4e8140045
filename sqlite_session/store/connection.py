"""Opening and configuring the connections to one directory's session files.

Journal mode
    WAL, with ``synchronous=OFF``: the cheapest journal that passes the crash test. A
    rollback-journal commit creates, writes and deletes a ``-journal`` file, and every
    transaction re-reads the file's change counter, while a WAL commit appends to an open
    file and readers check shared memory. A process killed in the middle of a commit
    leaves a WAL whose incomplete transaction the next connection ignores, so a session
    always holds the old or the new values of a save (``tests/reliability/test_crash.py``
    kills writers at random moments to prove it). ``MEMORY`` and ``OFF`` journals corrupt
    the file in that case (the same test fails with them), so they are not options.
    ``synchronous=OFF``: on tmpfs an fsync protects nothing (power loss empties the tmpfs
    anyway) and a process crash loses nothing that has reached the kernel.

    The price: while a connection to a session is open (the per-process pool keeps the
    recently used ones), SQLite keeps a 32 KiB ``-shm`` file and a ``-wal`` file of about
    20 KiB (at most :data:`WAL_SIZE_LIMIT` after any commit, however large: see
    :data:`WAL_CHECKPOINT_PAGES`) next to it. The last connection to close folds the WAL
    back into the file and deletes both, so an idle session is one file of one 4 KiB
    tmpfs page. New files are built without a journal under a temporary name and switched
    to WAL before the rename. A session file written by version 0.1 (rollback journal)
    is still read and written as it is.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import urllib.parse
from collections.abc import Callable
from typing import TypeVar

import apsw

from ..errors import (
    SessionError,
    SessionLockTimeout,
    SessionStorageFull,
    SessionStorageUnavailable,
    SessionTooLarge,
)
from .errors import (
    NoSpace,
    StorageUnsafe,
    lock_timeout,
    open_failure,
    short_name,
    unavailable,
    without_names,
)
from .format import PAGE_SIZE, SIDE_FILES
from .pool import ConnectionPool
from .rows import check_format

log = logging.getLogger("sqlite_session")
_T = TypeVar("_T")

# Checkpoint a session's WAL back into its file once it holds this many pages. SQLite's
# default (1,000) let the WAL of every open session grow to 1 MiB of tmpfs; 16 keeps it
# near 20 KiB at almost no cost per write.
WAL_CHECKPOINT_PAGES = 16
# A checkpoint rewinds the WAL without shrinking it, and the rewind comes only with the
# next write: after one large write the WAL kept that size while the session stayed
# open. A commit that leaves more frames than fit in this is checkpointed and truncated
# at once (see Connector.checkpoint_wal); a rewind truncates to it.
WAL_SIZE_LIMIT = 32 * 1024
WAL_HEADER_SIZE = 32
WAL_FRAME_SIZE = PAGE_SIZE + 24
OPEN_FLAGS = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_NOFOLLOW


def planted(what: str, st: os.stat_result) -> str | None:
    """Why a file of a session must not be used, or None: only a regular file of one link
    that this process's user owns.

    A hard link at a session's name, or at a side file's name, would make SQLite write
    into a file that also lives outside the directory; a file of another user was put
    there by someone else (a co-tenant who could write to the directory or swap it).
    """
    if not stat.S_ISREG(st.st_mode):
        return f"not opened: {what} is not a regular file (mode {stat.filemode(st.st_mode)})"
    if st.st_nlink != 1:
        return f"not opened: {what} has {st.st_nlink} hard links"
    if st.st_uid != os.geteuid():
        return f"not opened: {what} belongs to uid {st.st_uid}, not to this process's user"
    return None


def _refuse_planted(path: str, st: os.stat_result) -> None:
    """Raise :class:`StorageUnsafe` if the session file at ``path`` (whose lstat is ``st``)
    or one of its side files is planted.

    Checked before SQLite opens anything. SQLite never follows a symlink at the session
    file, but it opens its ``-wal``, ``-shm`` and ``-journal`` (a session file of version
    0.1) as it finds them. A file planted between this check and the open is possible
    only for the directory's owner (see :mod:`.directory`).
    """
    found = planted("the session file", st)
    for suffix in SIDE_FILES:
        try:
            found = found or planted(f"its {suffix}", os.lstat(path + suffix))
        except FileNotFoundError:
            pass
        except OSError as exc:
            what = f"session {short_name(path)}: cannot look up its {suffix}"
            raise unavailable(what, exc) from without_names(exc)
    if found:
        raise StorageUnsafe(found)


def _wal_is_empty(path: str) -> bool:
    """True when the session at ``path`` has no ``-wal`` file holding frames."""
    try:
        return os.lstat(path + "-wal").st_size <= WAL_HEADER_SIZE
    except FileNotFoundError:
        return True


class Connector:
    """Opens the connections to the session files of ``directory``, with their limits.

    ``busy_timeout`` (seconds) is how long a write waits for another writer of the same
    session; ``max_session_bytes`` caps a session's file through ``max_page_count``;
    ``max_keys`` caps its number of keys. ``pool`` keeps the idle connections of this
    process.
    """

    def __init__(
        self,
        directory: str,
        pool: ConnectionPool,
        *,
        busy_timeout: float,
        max_session_bytes: int | None,
        max_keys: int | None,
    ) -> None:
        self.directory = directory
        self.pool = pool
        self.busy_timeout = busy_timeout
        self.max_session_bytes = max_session_bytes
        self.max_keys = max_keys

    def configure(self, conn: apsw.Connection) -> None:
        """Apply the store's settings to a new connection."""
        conn.setbusytimeout(int(self.busy_timeout * 1000))
        conn.execute("PRAGMA synchronous=OFF")
        conn.set_wal_hook(self.checkpoint_wal)  # (in place of PRAGMA wal_autocheckpoint)
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        if self.max_session_bytes is not None:
            pages = max(4, self.max_session_bytes // PAGE_SIZE)
            conn.execute(f"PRAGMA max_page_count={pages}")

    def checkpoint_wal(self, conn: apsw.Connection, name: str, frames: int) -> int:
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

    def open(self, path: str, st: os.stat_result) -> apsw.Connection:
        """A configured connection to a session file of ours, or the reason there is none.

        ``st`` is the file's lstat, taken by the caller. Raises FileNotFoundError (no
        file), :class:`StorageBroken` (opened, and not a session of ours),
        :class:`StorageUnsafe` (planted or read-only), :class:`NoSpace`,
        ``apsw.BusyError`` or :class:`SessionStorageUnavailable` (any other failure to
        open: the file may be fine). See :func:`open_failure`.
        """
        _refuse_planted(path, st)
        try:
            conn = apsw.Connection(path, flags=OPEN_FLAGS)
        except apsw.BusyError:
            raise
        except apsw.Error as exc:
            raise open_failure(exc, path, 0) from exc
        try:
            if conn.readonly("main"):  # SQLite falls back to read-only when it must
                raise StorageUnsafe("the session file opens only read-only")
            self.configure(conn)
            check_format(conn)
        except apsw.BusyError:
            conn.close()
            raise
        except apsw.Error as exc:
            no_space = self.out_of_space(exc, conn)  # no room for its -shm or -wal file
            failure = open_failure(exc, path, conn.system_errno)
            conn.close()
            raise (NoSpace(str(exc)) if no_space else failure) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def open_snapshot(self, path: str) -> apsw.Connection:
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
            log.error("session filesystem full: %s cannot be opened", short_name(path))
            raise SessionStorageFull("no space left on the session filesystem to open a session")
        uri = "file:" + urllib.parse.quote(path) + "?immutable=1"
        flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI | apsw.SQLITE_OPEN_NOFOLLOW
        conn = apsw.Connection(uri, flags=flags)
        try:
            check_format(conn)
        except BaseException:
            conn.close()
            raise
        log.warning("session filesystem full: %s read without locks", short_name(path))
        return conn

    def freeing_descriptors(self, attempt: Callable[[], _T]) -> _T:
        """``attempt()``, run once more after the pool closed its idle connections if it
        failed for lack of descriptors or memory (each connection holds up to three)."""
        try:
            return attempt()
        except SessionStorageUnavailable as exc:
            closed = self.pool.close_idle()
            log.warning("session storage unavailable (%s); %d idle connections closed", exc, closed)
            if not closed:
                raise
        return attempt()

    def lock_timeout(self, path: str) -> SessionLockTimeout:
        """The error for a lock on ``path`` not acquired within ``busy_timeout``."""
        return lock_timeout(path, self.busy_timeout)

    def check_key_count(self, nkeys: int, key: str) -> None:
        """Raise :class:`SessionTooLarge` when writing ``key`` made ``nkeys`` too many."""
        if self.max_keys is not None and nkeys > self.max_keys:
            raise SessionTooLarge(
                key, f"session would hold {nkeys} keys (limit {self.max_keys}) at {key!r}"
            )

    def out_of_space(self, exc: BaseException, conn: apsw.Connection) -> bool:
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

    def full_error(self, path: str, key: str = "", value_bytes: int = 0) -> SessionError:
        """Tell a session over its size limit from a filesystem that is full.

        SQLite reports both as ``SQLITE_FULL`` and rolls the whole transaction back,
        so the filesystem is asked instead: if it still has room for everything the
        failed write of ``key`` (with new values of ``value_bytes`` in all) could have
        needed (the file and a journal as large, the new values twice over), space was
        not the problem and the session's own page limit (``max_session_bytes``)
        stopped it.
        """
        if key and self.max_session_bytes is not None:
            with contextlib.suppress(OSError):
                needed = 2 * os.lstat(path).st_size + 16 * PAGE_SIZE + 2 * value_bytes
                fs = os.statvfs(self.directory)
                if fs.f_bavail * fs.f_frsize >= needed:
                    return SessionTooLarge(
                        key,
                        f"session would exceed {self.max_session_bytes} bytes when writing {key!r}",
                    )
        where = f" while writing {key!r}" if key else ""
        log.error("session storage is full%s: the save was rolled back", where)
        return SessionStorageFull(f"no space left on the session filesystem{where}")
