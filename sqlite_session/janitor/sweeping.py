"""One sweep of a session directory: remove expired session files and stale leftovers.

A sweep streams the directory with :func:`os.scandir` (memory does not grow with the
number of files) and costs one ``lstat`` per session whose mtime mirrors its expiry
(see :mod:`sqlite_session.store.mirror`: the mirror is never earlier than the stored
expiry). A file whose mirror is in the future is live and skipped. A file whose mirror
passed more than :data:`LSTAT_GRACE` seconds ago has expired, and an expired session is
dead for good (every read checks the expiry, and no write revives it), so it is unlinked
on the spot, without opening SQLite, when no connection has it open (no ``-wal`` file
next to it): a process that opens it at that moment reads an expired session or finds
nothing. The other files (no mirror: SQLite wrote them since; a ``-wal``: open
somewhere; just expired) are opened through :meth:`SessionStore.sweep_file`, which takes
the session's write lock, re-reads the expiry, tombstones, commits and then unlinks, and
skips a session in use (its lock held); it also puts a live file's mirror back.

What is removed, and what is never touched
    * ``<id>.session`` files whose stored expiry has passed (and MOVED tombstones whose
      grace has passed), whatever ``grace`` says: one that cannot be opened for lack of
      space is read without a lock (see ``_sweep_without_space``).
    * ``<id>.session`` files that opened and proved not to be a session (corrupt,
      truncated, empty, another program's database) when their name has the exact shape
      of one of our ids and nothing has touched them (``ctime``) for ``grace`` seconds.
      Files of a *newer* format are left alone: a newer version of the app may be
      serving them. So is a file that could not be opened (no descriptor or memory left,
      permissions: a failure to open proves nothing about the file) and a planted one
      (a hard link, a read-only file, a planted ``-wal``/``-shm``).
    * ``.tmp-<hex>`` files (a creation that crashed before its rename) and ``.probe-<pid>``
      files (a start-up check that crashed) untouched for ``grace`` seconds. A
      ``.tmp-`` file whose creator still holds its ``flock`` is being built and is never
      removed, whatever ``grace`` says; nor are the side files of an existing one.
    * ``<id>.session-journal`` (and ``-wal``/``-shm``) files whose session file is gone,
      untouched for ``grace`` seconds. A journal next to an existing session file is
      never removed: if it is hot, SQLite needs it to roll the session back.
    * The user index (``.user-index`` and its side files) is never removed; the entries
      of sessions that are gone are pruned from it after the sweep.
    * Nothing else: files with names we never create are counted as foreign and left
      alone, so a sweep pointed at the wrong directory by mistake destroys nothing that
      is not ours. Symlinks are never followed nor removed, directories never removed.

Two sweepers at once are safe (each file's removal is serialised by its lock; the loser
finds it busy or gone). At most one process sweeps a directory at a time all the same
when the callers take the directory's sweep lock (see :mod:`.lock`), as the CLI and
in-app sweeping do.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from stat import S_ISDIR, S_ISREG

from ..ids import is_valid_session_id
from ..store import SUFFIX, TEMP_PREFIX, SessionStore, SweepOutcome
from ..store.accounts import Accounts
from ..store.connection import planted
from ..store.mirror import mirrored
from ..store.user_index import INDEX_FILES
from .entries import Kind, kind_of, main_file, session_id
from .lock import JANITOR_FILES, try_flock
from .report import Event, SweepReport

DEFAULT_GRACE = 3600.0
DEFAULT_LOCK_TIMEOUT = 0.1
PROGRESS_EVERY = 4096  # entries between two progress callbacks
# How long after its mirrored expiry a file goes on its lstat alone: longer than any
# request takes between finding its session live and moving the mirror on.
LSTAT_GRACE = 2.0

_PROBE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class _Sweep:
    """One pass over a directory (the state of :func:`sweep`)."""

    def __init__(
        self,
        directory: str,
        dir_fd: int,
        now: float,
        dry_run: bool,
        grace: float,
        lock_timeout: float,
        on_event: Event | None,
    ) -> None:
        self.directory = directory
        self.dir_fd = dir_fd
        self.now = now
        self.lstat_deadline = now - LSTAT_GRACE  # a mirror before it: expired for sure
        self.dry_run = dry_run
        self.grace = grace
        # Its own store: no connection pool (capacity 0), a short lock wait.
        self.store = SessionStore(directory, busy_timeout=lock_timeout, connection_cache_size=0)
        self.on_event = on_event
        self.report = SweepReport(dry_run=dry_run)

    def event(self, what: str, name: str) -> None:
        if self.on_event is not None:
            self.on_event(what, name)

    def entry(self, entry: os.DirEntry[str]) -> None:
        """Look at one directory entry: one ``lstat``, more only for candidates."""
        name, report = entry.name, self.report
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            report.vanished += 1
            return
        if name.endswith(SUFFIX) and name[0] != "." and S_ISREG(st.st_mode):
            # (the kind_of() of a session, tested first: nearly every entry is one)
            report.sessions += 1
            if st.st_mtime > self.now:
                report.fresh += 1
            else:
                self.candidate(name, st)
        elif name not in JANITOR_FILES and name not in INDEX_FILES:
            self.other(name, st)

    def other(self, name: str, st: os.stat_result) -> None:
        """Any entry but a session file and the janitor's own files."""
        report = self.report
        if not S_ISREG(st.st_mode):
            if S_ISDIR(st.st_mode):
                report.directories += 1  # (lost+found on a filesystem of its own)
                self.event("directory, left alone", name)
            else:
                report.foreign += 1
                self.event("foreign (not a regular file)", name)
            return
        kind = kind_of(name)
        if kind is Kind.TEMPORARY:
            self.temporary(name, st)
        elif kind is Kind.SIDECAR:
            self.sidecar(name, st)
        else:
            report.foreign += 1
            self.event("foreign", name)

    def candidate(self, name: str, st: os.stat_result) -> None:
        """A session file whose mtime is not in the future: expired, or not mirrored."""
        try:
            self.expire(name, st)
        except OSError as exc:  # e.g. unlink refused: the next sweep retries
            self.report.errors += 1
            self.event(f"error: {exc}", name)

    def expire(self, name: str, st: os.stat_result) -> None:
        report = self.report
        bound = mirrored(st)
        if bound is not None and bound > self.lstat_deadline:
            report.fresh += 1  # expired moments ago: left to the next sweep
            return
        if bound is not None and self.unused(name, st):
            if not self.dry_run:
                try:
                    os.unlink(name, dir_fd=self.dir_fd)
                except FileNotFoundError:
                    report.vanished += 1
                    return
            report.removed_unopened += 1
            self.removed(name, st)
            return
        sid = session_id(name)
        outcome = self.store.sweep_file(sid, self.now, dry_run=self.dry_run)
        if outcome in (SweepOutcome.REMOVED, SweepOutcome.EXPIRED):
            self.removed(name, st)
        elif outcome is SweepOutcome.KEPT:
            report.kept += 1
        elif outcome is SweepOutcome.BUSY:
            report.busy += 1
            self.event("busy, skipped", name)
        elif outcome is SweepOutcome.VANISHED:
            report.vanished += 1
        elif outcome is SweepOutcome.NEWER:
            report.newer += 1
            self.event("newer format, left alone", name)
        elif outcome is SweepOutcome.UNSAFE:
            report.unsafe += 1
            self.event("planted or read-only, left alone", name)
        elif outcome is SweepOutcome.UNOPENED:
            report.unopened += 1
            self.event("could not be opened, left alone", name)
        else:
            report.broken += 1
            if not is_valid_session_id(sid):
                self.event("unreadable, not named like a session of ours, left alone", name)
            elif self.garbage(name, st, "unreadable session file"):
                report.broken_removed += 1

    def unused(self, name: str, st: os.stat_result) -> bool:
        """True when no connection has the file open: there is no ``-wal`` next to it (a
        connection keeps one). A planted file (a hard link, another user's) is left to the
        full check, which refuses it."""
        if planted(name, st) is not None:
            return False
        try:
            os.lstat(name + "-wal", dir_fd=self.dir_fd)
        except FileNotFoundError:
            return True
        return False

    def removed(self, name: str, st: os.stat_result) -> None:
        self.report.removed += 1
        self.report.freed_bytes += st.st_blocks * 512
        self.event("would remove expired" if self.dry_run else "removed expired", name)

    def sidecar(self, name: str, st: os.stat_result) -> None:
        """A journal (or WAL/SHM file): kept while its session file exists."""
        session_name = main_file(name)
        if os.path.lexists(os.path.join(self.directory, session_name)):
            self.report.journals_kept += 1
            self.event("journal of an existing session, kept", name)
        elif planted(name, st) is not None:
            self.report.unsafe += 1
            self.event("planted (a hard link, another user's), left alone", name)
        elif is_valid_session_id(session_id(session_name)) and self.garbage(
            name, st, "orphan journal"
        ):
            self.report.journals_removed += 1

    def temporary(self, name: str, st: os.stat_result) -> None:
        """A temporary file: removed once stale, unless its session is still being built."""
        built = main_file(name)
        built_path = os.path.join(self.directory, built)
        being_built = built.startswith(TEMP_PREFIX) and os.path.lexists(built_path)
        lock_of = built_path if being_built else None
        if self.garbage(name, st, "stale temporary file", lock_of=lock_of):
            self.report.temp_removed += 1

    def garbage(
        self, name: str, st: os.stat_result, label: str, *, lock_of: str | None = None
    ) -> bool:
        """Remove a leftover file of ours once nothing has touched it for ``grace`` seconds.

        ``ctime`` (which nobody can set) is the age: an mtime may mirror a future expiry.
        With ``lock_of``, the file is kept whatever its age while someone holds the
        ``flock`` of that file: a temporary session file's creator holds it while building
        it (see ``SessionStore.create``). Returns True when the file was removed (or would
        be, in a dry run).
        """
        if self.now - st.st_ctime < self.grace:
            self.event(f"{label}, too recent to remove", name)
            return False
        path = os.path.join(self.directory, name)
        lock = try_flock(lock_of, _PROBE_FLAGS) if lock_of else contextlib.nullcontext(0)
        try:
            with lock as held:
                if held is None:
                    self.event(f"{label}, being built, kept", name)
                    return False
                if not self.dry_run:
                    os.unlink(path)  # (under its lock: a creator that locks later starts again)
        except FileNotFoundError:
            self.report.vanished += 1
            return False
        except OSError as exc:
            self.report.errors += 1
            self.event(f"{label}, cannot remove: {exc.strerror}", name)
            return False
        self.report.freed_bytes += st.st_blocks * 512
        self.event(f"{'would remove' if self.dry_run else 'removed'} {label}", name)
        return True


def sweep(
    directory: str | os.PathLike[str],
    *,
    now: float | None = None,
    dry_run: bool = False,
    grace: float = DEFAULT_GRACE,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    on_event: Event | None = None,
    progress: Callable[[SweepReport], None] | None = None,
) -> SweepReport:
    """Remove the expired sessions (and stale leftovers) of one session directory.

    ``now`` is the moment sessions are judged against (default: the start of the
    sweep; a session that expires during a long sweep is left for the next one).
    ``grace`` is how long a leftover file (temporary, orphan journal, unreadable session)
    must have been untouched before it is removed (a file being built never is);
    ``lock_timeout`` how long to wait for a session's lock before counting it busy.
    ``on_event`` receives each file-level action; ``progress`` the running report every
    few thousand entries. ``directory`` is resolved to its real path once. Raises
    :class:`OSError` only if the directory itself cannot be opened or listed.
    """
    start = time.monotonic()
    real = os.path.realpath(directory)  # resolved once, as the store does (see SessionStore)
    dir_fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        state = _Sweep(
            real,
            dir_fd,
            time.time() if now is None else now,
            dry_run,
            grace,
            lock_timeout,
            on_event,
        )
        report = state.report
        look = state.entry
        with os.scandir(dir_fd) as entries:
            for report.entries, entry in enumerate(entries, 1):
                look(entry)
                if progress is not None and report.entries % PROGRESS_EVERY == 0:
                    report.seconds = time.monotonic() - start
                    progress(report)
    finally:
        os.close(dir_fd)
    accounts = Accounts(state.store)
    if not dry_run and accounts.index.exists():
        report.index_pruned = accounts.prune(state.now)  # the entries of the sessions removed
    report.seconds = time.monotonic() - start
    return report
