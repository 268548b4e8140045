"""`SessionStore`: the session files of one directory, read and written by session id."""

from __future__ import annotations

import functools
import logging
import os
import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, NamedTuple

import apsw

from .changes import Changes, WriteOutcome
from .checkout import Checkout
from .connection import Connector
from .errors import StorageBroken, on_open_file, short_name
from .files import FileBuilder
from .format import SUFFIX, Meta, OpenStatus
from .handle import SessionHandle
from .pool import ConnectionPool
from .removal import SweepOutcome, sweep_file
from .reserve import SpaceReserve
from .rows import read_meta, read_meta_and_key
from .transaction import Transaction

if TYPE_CHECKING:
    from .accounts import Accounts

log = logging.getLogger("sqlite_session")


class Opened(NamedTuple):
    """Result of :meth:`SessionStore.open`: the status and, for a live session, its meta.

    ``row`` is the value and version of the key passed to :meth:`SessionStore.open`
    (None when the key is absent, or when no key was asked for or the session is not live).
    """

    status: OpenStatus
    meta: Meta | None
    row: tuple[bytes, int] | None = None
    handle: SessionHandle | None = None  # a live session's: to read and write it through


class SessionStore:
    """The session files of one directory.

    ``busy_timeout`` (seconds) is how long a write waits for another writer of the same
    session before :class:`SessionLockTimeout`; ``max_session_bytes`` caps a session's
    file through SQLite's ``max_page_count``; ``max_keys`` caps its number of keys.
    ``directory`` is resolved to its real path once, here: SQLite refuses a path with a
    symlink anywhere in it. A directory found gone when a session is created is
    re-created with the interface's checks (``allow_unsafe_directory``).
    ``refresh_fraction`` is the interface's: how much of the lifetime past a new expiry a
    write that must move the file's expiry mirror may set it (see :mod:`.mirror`).
    ``absolute_lifetime`` (seconds, or None) caps every expiry written at the session's
    establishment plus that (see :meth:`capped`). ``reserve_fraction`` of the
    filesystem is kept for established sessions (see :mod:`.reserve`).
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
        refresh_fraction: float = 0.0,
        absolute_lifetime: float | None = None,
        reserve_fraction: float = 0.0,
    ) -> None:
        self.refresh_fraction = refresh_fraction
        self.absolute_lifetime = absolute_lifetime
        self.directory = os.path.realpath(directory)
        self._prefix = os.path.join(directory, "")
        self._pool = ConnectionPool(connection_cache_size)
        self.connector = Connector(
            self.directory,
            self._pool,
            busy_timeout=busy_timeout,
            max_session_bytes=max_session_bytes,
            max_keys=max_keys,
        )
        self._builder = FileBuilder(self.connector, allow_unsafe_directory=allow_unsafe_directory)
        self.reserve = SpaceReserve(self.directory, reserve_fraction)

    @functools.cached_property
    def accounts(self) -> Accounts:
        """Who this directory's sessions belong to (built at the first login or listing)."""
        from .accounts import Accounts  # (it builds on the store)

        return Accounts(self)

    def capped(self, expires_at: float, established_at: float | None) -> float:
        """``expires_at``, no later than ``established_at`` plus the absolute lifetime.

        A session stored by version 0.1 has no establishment time and is not capped.
        So the stored expiry is the one deadline readers and the sweeper check.
        """
        if self.absolute_lifetime is None or established_at is None:
            return expires_at
        return min(expires_at, established_at + self.absolute_lifetime)

    def path_for(self, sid: str) -> str:
        """The file of session ``sid`` (which the caller has validated as an id)."""
        return self._prefix + sid + SUFFIX  # not os.path.join: this runs several times a request

    @property
    def pooled_connections(self) -> int:
        """How many idle connections this process keeps open for later requests."""
        return self._pool.size

    # -- reading -------------------------------------------------------------------

    def open(self, sid: str, key: str | None = None, *, hold: bool = False) -> Opened:
        """Look at session ``sid``: is it live, and if so its meta row (and ``key``'s row).

        A live session comes with ``Opened.handle``, through which the caller reads and
        writes it; with ``hold``, the handle keeps the connection checked out for those
        later accesses, until the caller releases it.
        Damaged, foreign or planted files are logged and reported as
        :attr:`OpenStatus.BROKEN`; they are left untouched for the sweeper. A file that
        cannot be opened for now raises :class:`SessionStorageUnavailable`: never BROKEN.
        """
        path = self.path_for(sid)
        row = None
        handle = None
        try:
            with (checkout := Checkout(self.connector, path)) as conn:
                if conn is None:
                    return Opened(OpenStatus.MISSING, None)
                if key is None:
                    meta = on_open_file(conn, read_meta)
                else:
                    meta, row = on_open_file(conn, read_meta_and_key, key)
                status = meta.status(time.time())
                if status is not OpenStatus.LIVE:
                    return Opened(status, None)
                checkout.know(meta)
                if hold and checkout.writable:  # a full-disk snapshot is not held
                    checkout.keep()
                    handle = SessionHandle(self, sid, path, checkout)
        except (StorageBroken, apsw.Error) as exc:
            log.warning("ignoring unreadable session file %s: %s", short_name(path), exc)
            return Opened(OpenStatus.BROKEN, None)
        return Opened(OpenStatus.LIVE, meta, row, handle or self.handle(sid))

    def handle(self, sid: str) -> SessionHandle:
        """A handle on session ``sid`` that holds no connection: each access checks one out."""
        return SessionHandle(self, sid, self.path_for(sid))

    # -- writing -------------------------------------------------------------------

    def transaction(
        self, sid: str, timeout: float | None = None
    ) -> AbstractContextManager[Transaction]:
        """Hold session ``sid``'s write lock for a block: see :meth:`SessionHandle.transaction`."""
        return self.handle(sid).transaction(timeout)

    def write(self, sid: str, changes: Changes) -> WriteOutcome:
        """Apply ``changes`` to an existing session in one transaction."""
        return self.handle(sid).write(changes)

    def create(self, sid: str, changes: Changes, *, seq: int = 0) -> None:
        """Write a new session file for ``sid`` holding ``changes.upserts``.

        See :meth:`FileBuilder.create`: never seen half-built, and a failure is a
        :class:`SessionError`, never a raw ``OSError``. The new session is established
        now: ``changes.expires_at`` is capped accordingly (see :meth:`capped`).
        """
        now = time.time()
        if changes.user is not None and changes.account is None:  # a new session's login
            lifetime = changes.expires_at - now
            changes.account = self.accounts.new_account(changes.user, sid, lifetime)
        changes.expires_at = self.capped(changes.expires_at, now)
        self._builder.create(self.path_for(sid), changes, seq)

    def forget(self, sid: str) -> None:
        """Close the pooled connections of session ``sid`` (whose file has been unlinked)."""
        self._pool.forget(self.path_for(sid))

    def sweep_file(self, sid: str, now: float, *, dry_run: bool = False) -> SweepOutcome:
        """Remove session ``sid`` if it has expired by ``now``: see :func:`.removal.sweep_file`."""
        return sweep_file(self.connector, self.path_for(sid), now, dry_run=dry_run)
