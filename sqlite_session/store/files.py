"""Building a new session file: under a temporary name, locked while built, then renamed."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import time

import apsw

from ..errors import SessionError, SessionStorageUnavailable
from .changes import Changes
from .connection import OPEN_FLAGS, Connector
from .directory import recreate_directory
from .errors import short_of_resources, unavailable, without_names
from .format import INSERT_KV, INSERT_META, SCHEMA, TEMP_PREFIX, FileState
from .mirror import set_mirror
from .rows import write_account


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


def _raise_unavailable(exc: BaseException) -> None:
    """Raise a failure to build a file as :class:`SessionStorageUnavailable`.

    An ``OSError`` names the new session's file (a whole id): it is raised without its
    names. A missing or replaced directory stays a FileNotFoundError or a
    NotADirectoryError, for :meth:`FileBuilder.create` to re-create the directory.
    """
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        raise without_names(exc) from None
    if isinstance(exc, OSError):
        raise unavailable("cannot create a session file", exc) from without_names(exc)
    if isinstance(exc, apsw.Error):
        raise SessionStorageUnavailable(
            f"cannot create a session file: {type(exc).__name__}: {exc}"
        ) from exc


class FileBuilder:
    """Creates the session files of ``connector``'s directory.

    A directory found gone is re-created with the interface's checks
    (``allow_unsafe_directory``).
    """

    def __init__(self, connector: Connector, *, allow_unsafe_directory: bool) -> None:
        self._connector = connector
        self._allow_unsafe_directory = allow_unsafe_directory

    def create(self, path: str, changes: Changes, seq: int) -> None:
        """Write a new session file at ``path`` holding ``changes.upserts``.

        The file is built under a temporary name and renamed into place, so a session
        file is never seen half-initialised and a crash leaves only a ``.tmp-`` file.
        Short of descriptors, it is tried again once the pool has given its idle ones
        back. A directory found gone is re-created and the file built again; so is a
        file removed while it was built (by hand: a sweeper never removes a temporary
        file whose creator holds its lock). A second failure is a :class:`SessionError`,
        never a raw ``OSError``.
        """

        def build() -> None:
            self._build(path, changes, seq)

        directory = self._connector.directory
        try:
            return self._connector.freeing_descriptors(build)
        except (FileNotFoundError, NotADirectoryError):
            if not os.path.isdir(directory):
                recreate_directory(directory, allow_unsafe=self._allow_unsafe_directory)
        try:
            return build()
        except (FileNotFoundError, NotADirectoryError) as exc:
            what = "the session file being created was removed meanwhile"
            raise unavailable(what, exc) from without_names(exc)

    def _build(self, path: str, changes: Changes, seq: int) -> None:
        """One attempt of :meth:`create`, under the creator's lock on the temporary file."""
        connector = self._connector
        temp = os.path.join(connector.directory, f"{TEMP_PREFIX}{secrets.token_hex(8)}")
        conn: apsw.Connection | None = None
        fd: int | None = None
        try:
            fd = _create_locked(temp)
            conn = apsw.Connection(temp, flags=OPEN_FLAGS)
            connector.configure(conn)
            key = ""
            try:
                # The file is invisible until the rename, so it needs no journal while it
                # is built (a crash leaves a .tmp- file for the sweeper); it is switched to
                # WAL once complete.
                conn.execute("PRAGMA journal_mode=OFF")
                conn.execute(SCHEMA)
                conn.execute(
                    INSERT_META,
                    (
                        changes.expires_at,
                        int(FileState.LIVE),
                        int(changes.permanent),
                        seq,
                        len(changes.upserts),
                        time.time(),  # created, or regenerated (a move)
                        1 if changes.anonymous else None,
                        changes.expires_at,  # the mirror set below
                    ),
                )
                if changes.account is not None:
                    write_account(conn, changes.account)
                for key, value in changes.upserts.items():
                    conn.execute(INSERT_KV, (key, value, seq))
                connector.check_key_count(len(changes.upserts), key)
                conn.execute("COMMIT")
                conn.execute("PRAGMA journal_mode=WAL")
            except apsw.FullError as exc:
                raise connector.full_error(temp, key, changes.value_bytes) from exc
            conn.close()
            conn = None
            set_mirror(fd, changes.expires_at)
            os.rename(temp, path)
        except BaseException as exc:
            no_space = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
            short = short_of_resources(exc, conn, temp)
            if conn is not None:
                no_space = no_space or connector.out_of_space(exc, conn)
                conn.close()
            if fd is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
            if isinstance(exc, SessionError):
                raise
            if no_space:
                raise connector.full_error(temp) from exc
            if short:
                raise SessionStorageUnavailable(f"cannot create a session file: {short}") from exc
            _raise_unavailable(exc)
            raise
        finally:
            if fd is not None:  # after SQLite's close: its own locks are on other descriptors
                os.close(fd)
