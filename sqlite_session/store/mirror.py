"""The expiry mirror: a session file's mtime, never earlier than the expiry it stores.

The sweeper removes an expired session on its ``lstat`` alone (see
:mod:`sqlite_session.janitor.sweeping`), so the mtime must be an upper bound of the
stored expiry whenever it claims to be a mirror:

* it is set, under the session's write lock, *before* the commit that moves the expiry
  past the bound stored in the file (``meta.mirror``, committed with it: a commit that
  then fails leaves the mtime ahead, still a bound), and lowered only under that lock
  after a commit that moved the expiry and the bound earlier (:func:`lower_mirror`).
  Whoever sets it sets it at or above the stored bound, so a write whose expiry stays
  under that bound knows the mirror covers it without looking (:func:`cover`);
* it is tagged: its nanoseconds are :data:`TAG_NS` and it differs from the ctime. SQLite
  writing the file (a WAL checkpoint, above all the one at the last close) sets mtime and
  ctime to the same "now", which is no bound at all: such a file is simply not mirrored,
  and the sweeper opens it (and re-applies the mirror under the lock). A ``chmod`` or
  ``chown`` after such a write moves only the ctime: the missing tag still tells it apart.

A filesystem whose timestamps are coarser than a nanosecond cannot hold the tag: its
files are never mirrored, and every candidate is opened (slower, equally safe).
"""

from __future__ import annotations

import contextlib
import math
import os

import apsw

from .format import Meta
from .rows import read_meta

TAG_NS = 271_828_182  # the nanoseconds of every mirror; a write time has them by chance only
NS = 1_000_000_000
# At most this far past its expiry, a mirror lets the next writes skip the utime while
# their expiry stays below it (a session keeps at most that long after it expired).
MAX_LEAD = 60.0


def mirror_ns(expires_at: float) -> int:
    """The tagged mtime, in nanoseconds, that mirrors ``expires_at``: after it, by < 2 s."""
    return (math.floor(expires_at) + 1) * NS + TAG_NS


def mirrored(st: os.stat_result) -> float | None:
    """The bound of the stored expiry that the file's mtime mirrors, or None if it mirrors none."""
    mtime = st.st_mtime_ns
    if mtime % NS != TAG_NS or mtime == st.st_ctime_ns:
        return None
    return mtime / NS


def set_mirror(target: str | int, expires_at: float) -> None:
    """Mirror ``expires_at`` into the mtime of ``target`` (a path, never followed, or an fd).

    The caller holds the session's write lock, or the file is still invisible.
    """
    ns = mirror_ns(expires_at)
    if isinstance(target, int):
        os.utime(target, ns=(ns, ns))
    else:
        os.utime(target, ns=(ns, ns), follow_symlinks=False)


def cover(path: str, expires_at: float, meta: Meta, lead: float) -> float | None:
    """Under the write lock, before the commit that stores ``expires_at``: make the
    file's mirror at least ``expires_at``; returns the bound to store with it in
    ``meta.mirror`` (None: the stored one already covers it, and nothing was done).

    A tagged mtime is never below the stored bound (every setter of the mtime sets it at
    or above the bound it stores or reads), so a write under the bound needs no system
    call. Otherwise a ``utime`` sets the mirror ``lead`` seconds (at most
    :data:`MAX_LEAD`) beyond, so the writes that follow within it need none. A file of
    an older format (no stored bound) gets its ``utime`` at every write.
    """
    if meta.mirror is not None and expires_at <= meta.mirror:
        return None
    bound = expires_at + min(max(lead, 0.0), MAX_LEAD)
    with contextlib.suppress(FileNotFoundError):  # unlinked meanwhile: nobody reads it again
        set_mirror(path, bound)
    return bound


def lower_mirror(conn: apsw.Connection, path: str) -> None:
    """After a commit that moved the expiry earlier: bring the mirror down to it.

    Under a new write lock, so that no other writer's expiry can be committed meanwhile;
    a lock not had within the busy timeout leaves the mirror where it is (too late,
    never too early).
    """
    with contextlib.suppress(apsw.Error, OSError):
        conn.execute("BEGIN IMMEDIATE")
        try:
            set_mirror(path, read_meta(conn).bound)
        finally:
            conn.execute("ROLLBACK")


def close_keeping_mirror(conn: apsw.Connection, path: str, inode: tuple[int, int]) -> None:
    """Close an idle connection to the file at ``path`` (``inode``), keeping its mirror.

    The last connection to close copies the WAL into the file, which makes the mtime a
    write time: so the WAL is copied first, the mirror re-applied under the write lock,
    and the close finds nothing left to copy. Anything in the way (a reader holding the
    WAL, a writer, a file replaced by hand) leaves the file unmirrored, never wrong.
    """
    with contextlib.suppress(apsw.Error, OSError):
        conn.setbusytimeout(0)
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        conn.execute("BEGIN IMMEDIATE")
        try:
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) == inode:
                set_mirror(path, read_meta(conn).bound)
        finally:
            conn.execute("ROLLBACK")
    conn.close()
