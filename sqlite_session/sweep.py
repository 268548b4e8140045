"""The janitor: remove expired session files, shared by the CLI and in-app sweeping.

A sweep streams the directory with :func:`os.scandir` (memory does not grow with the
number of files) and costs one ``lstat`` per fresh session: a session file's mtime
mirrors its expiry, so a file whose mtime is in the future is skipped unopened. Only the
other files are opened, and only through :meth:`SessionStore.sweep_file`, which takes the
session's write lock, re-reads the expiry, tombstones, commits and then unlinks: a
request that holds the old inode sees the tombstone instead of writing into a file
nobody will read again, and a session in use (its lock held) is skipped.

What is removed, and what is never touched
    * ``<id>.session`` files whose stored expiry has passed (and MOVED tombstones whose
      grace has passed).
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
    * Nothing else: files with names we never create are counted as foreign and left
      alone, so a sweep pointed at the wrong directory by mistake destroys nothing that
      is not ours. Symlinks are never followed nor removed, directories never removed.

Two sweepers at once are safe (each file's removal is serialised by its lock; the loser
finds it busy or gone). In-app sweeping (:class:`BackgroundSweeper`) additionally takes a
non-blocking ``flock`` on ``<dir>/.sweep.lock`` so that at most one process sweeps a
directory at a time; the CLI takes the same lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .ids import is_valid_session_id
from .store import SUFFIX, TEMP_PREFIX, SessionStore, SweepOutcome

log = logging.getLogger("sqlite_session")

LOCK_NAME = ".sweep.lock"
DEFAULT_GRACE = 3600.0
DEFAULT_LOCK_TIMEOUT = 0.1
PROGRESS_EVERY = 4096  # entries between two progress callbacks

_TEMP_RE = re.compile(r"\.tmp-[0-9a-f]+(?:-journal|-wal|-shm)?|\.probe-[0-9]+")
_SIDECARS = ("-journal", "-wal", "-shm")
_PROBE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

Event = Callable[[str, str], None]
"""A per-file notification: (what happened, file name), e.g. ``("removed", "abc.session")``."""


@dataclass
class SweepReport:
    """What one sweep saw and did (in a dry run: what it would have done)."""

    sessions: int = 0  # session files seen
    removed: int = 0  # expired sessions removed
    fresh: int = 0  # skipped with one stat: mtime (the mirrored expiry) in the future
    kept: int = 0  # opened, but still live under the lock (the mtime hint was stale)
    busy: int = 0  # in use by a request (lock held): skipped
    vanished: int = 0  # removed by someone else meanwhile
    broken: int = 0  # unreadable session files seen
    broken_removed: int = 0  # ... of which removed (old enough, name of ours)
    newer: int = 0  # session files of a newer format: left alone
    unsafe: int = 0  # planted (hard links...) or read-only session files: left alone
    unopened: int = 0  # session files that could not be opened now: left alone
    temp_removed: int = 0  # stale temporary files removed
    journals_kept: int = 0  # journals next to an existing session: left for SQLite
    journals_removed: int = 0  # orphan journals removed
    foreign: int = 0  # entries we never create (other names, symlinks, directories)
    errors: int = 0  # files we could not remove (permissions...)
    entries: int = 0  # directory entries looked at
    seconds: float = 0.0
    dry_run: bool = False

    def summary(self) -> str:
        """The one-line summary: ``removed N expired of M sessions in T s`` plus any extras."""
        verb = "would remove" if self.dry_run else "removed"
        done = "to remove" if self.dry_run else "removed"
        line = f"{verb} {self.removed} expired of {self.sessions} sessions in {self.seconds:.2f} s"
        extras = [
            f"{count} {label}"
            for count, label in (
                (self.busy, "busy (in use, skipped)"),
                (self.broken, f"unreadable ({self.broken_removed} {done})"),
                (self.newer, "of a newer format (left alone)"),
                (self.unsafe, "planted or read-only (left alone)"),
                (self.unopened, "could not be opened (left alone)"),
                (self.temp_removed, f"stale temporary files {done}"),
                (self.journals_removed, f"orphan journals {done}"),
                (self.foreign, "foreign entries (left alone)"),
                (self.errors, "errors"),
            )
            if count
        ]
        suffix = "; " + ", ".join(extras) if extras else ""
        return line + suffix + (" (dry run)" if self.dry_run else "")


class _Sweep:
    """One pass over a directory (the state of :func:`sweep`)."""

    def __init__(
        self,
        directory: str,
        now: float,
        dry_run: bool,
        grace: float,
        lock_timeout: float,
        on_event: Event | None,
    ) -> None:
        self.directory = directory
        self.now = now
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
        if name == LOCK_NAME:
            return
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            report.vanished += 1
            return
        if not stat.S_ISREG(st.st_mode):
            report.foreign += 1
            self.event("foreign (not a regular file)", name)
        elif name.endswith(SUFFIX) and not name.startswith("."):
            try:
                self.session(name, st)
            except OSError as exc:  # e.g. unlink refused: the next sweep retries
                report.errors += 1
                self.event(f"error: {exc}", name)
        elif _TEMP_RE.fullmatch(name):
            self.temporary(name, st)
        elif name.endswith(_SIDECARS) and name.rsplit("-", 1)[0].endswith(SUFFIX):
            self.sidecar(name, st)
        else:
            report.foreign += 1
            self.event("foreign", name)

    def session(self, name: str, st: os.stat_result) -> None:
        report = self.report
        report.sessions += 1
        if st.st_mtime > self.now:
            report.fresh += 1
            return
        sid = name[: -len(SUFFIX)]
        outcome = self.store.sweep_file(sid, self.now, dry_run=self.dry_run)
        if outcome in (SweepOutcome.REMOVED, SweepOutcome.EXPIRED):
            report.removed += 1
            self.event("would remove expired" if self.dry_run else "removed expired", name)
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

    def sidecar(self, name: str, st: os.stat_result) -> None:
        """A journal (or WAL/SHM file): kept while its session file exists."""
        session_name = name.rsplit("-", 1)[0]
        if os.path.lexists(os.path.join(self.directory, session_name)):
            self.report.journals_kept += 1
            self.event("journal of an existing session, kept", name)
        elif is_valid_session_id(session_name[: -len(SUFFIX)]) and self.garbage(
            name, st, "orphan journal"
        ):
            self.report.journals_removed += 1

    def temporary(self, name: str, st: os.stat_result) -> None:
        """A temporary file: removed once stale, unless its session is still being built."""
        built = name.rsplit("-", 1)[0] if name.endswith(_SIDECARS) else name
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
        lock = _try_flock(lock_of, _PROBE_FLAGS) if lock_of else contextlib.nullcontext(0)
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
        self.event(f"{'would remove' if self.dry_run else 'removed'} {label}", name)
        return True


@contextlib.contextmanager
def _try_flock(path: str, flags: int) -> Iterator[int | None]:
    """Open ``path`` and take its exclusive ``flock`` without waiting, for the block.

    Yields the descriptor, or None while someone else holds the lock. (Opening a
    temporary file this way is harmless to SQLite's own locks: only its builder has it
    open, and nobody else ever opens it through SQLite.)
    """
    fd = os.open(path, flags, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        try:
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: a forked child may share this fd
    finally:
        os.close(fd)


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
    :class:`OSError` only if the directory itself cannot be listed.
    """
    start = time.monotonic()
    state = _Sweep(
        os.path.realpath(directory),  # resolved once, as the store does (see SessionStore)
        time.time() if now is None else now,
        dry_run,
        grace,
        lock_timeout,
        on_event,
    )
    with os.scandir(state.directory) as entries:
        for entry in entries:
            state.entry(entry)
            state.report.entries += 1
            if progress is not None and state.report.entries % PROGRESS_EVERY == 0:
                state.report.seconds = time.monotonic() - start
                progress(state.report)
    state.report.seconds = time.monotonic() - start
    return state.report


@dataclass
class DirectoryStats:
    """A monitoring snapshot of a session directory, from one ``lstat`` per file.

    ``expired`` and the expiries come from the mtime mirror (a hint: the sweeper re-reads
    the expiry stored in the file before removing anything).
    """

    sessions: int = 0
    session_bytes: int = 0  # allocated on disk: sum of st_blocks * 512
    expired: int = 0
    oldest_expiry: float | None = None
    newest_expiry: float | None = None
    other_files: int = 0
    other_bytes: int = 0
    seconds: float = 0.0


def stats(directory: str | os.PathLike[str], *, now: float | None = None) -> DirectoryStats:
    """Count the sessions of ``directory``, their size on disk and how many have expired."""
    start = time.monotonic()
    now = time.time() if now is None else now
    result = DirectoryStats()
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            size = st.st_blocks * 512
            if not (entry.name.endswith(SUFFIX) and not entry.name.startswith(".")):
                result.other_files += 1
                result.other_bytes += size
                continue
            expiry = st.st_mtime
            result.sessions += 1
            result.session_bytes += size
            result.expired += expiry <= now
            if result.oldest_expiry is None or expiry < result.oldest_expiry:
                result.oldest_expiry = expiry
            if result.newest_expiry is None or expiry > result.newest_expiry:
                result.newest_expiry = expiry
    result.seconds = time.monotonic() - start
    return result


class SweepLock:
    """The non-blocking ``flock`` on ``<dir>/.sweep.lock`` held during a sweep.

    ``flock`` (not ``fcntl``) locks, on a file SQLite never opens: POSIX ``fcntl`` locks
    are per process and would be dropped when any descriptor of the file is closed. The
    file also records when the last sweep finished, so that many workers that each wake
    up every T seconds sweep about once per T between them.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @property
    def last_sweep(self) -> float:
        """When the last sweep of this directory finished (0 if never)."""
        try:
            return float(os.pread(self._fd, 64, 0).decode("ascii") or 0)
        except (ValueError, UnicodeDecodeError):
            return 0.0

    def record_sweep(self, finished: float) -> None:
        data = f"{finished:.6f}\n".encode("ascii")
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))


@contextlib.contextmanager
def sweep_lock(directory: str | os.PathLike[str]) -> Iterator[SweepLock | None]:
    """Hold the directory's sweep lock for the block; yields None if another sweep holds it."""
    path = os.path.join(os.fspath(directory), LOCK_NAME)
    with _try_flock(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC) as fd:
        yield None if fd is None else SweepLock(fd)


class BackgroundSweeper:
    """In-app sweeping: a daemon thread per process that sweeps every ``interval`` seconds.

    Started lazily by :meth:`ensure_running` (the interface calls it at each request; it
    costs a ``getpid`` once running), so a pre-forking server such as gunicorn starts one
    in each worker after the fork, never in the arbiter; a thread does not survive a fork,
    so a new process id means a new thread. The sweeps themselves are coordinated through
    :func:`sweep_lock`: at most one process sweeps the directory at a time, and a process
    whose turn comes less than ``interval`` after the last sweep (by anyone, the cron job
    included) skips it. Requests never wait for a sweep.
    """

    def __init__(
        self,
        directory: str,
        interval: float,
        *,
        grace: float = DEFAULT_GRACE,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        if not interval > 0:
            raise ValueError("the sweep interval must be a positive number of seconds")
        self.directory = os.path.realpath(directory)
        self.interval = interval
        self.grace = grace
        self.lock_timeout = lock_timeout
        self._pid: int | None = None
        self._stopped = False
        self._stop = threading.Event()
        # One start lock per process id: a lock inherited through fork may be held forever.
        self._start_locks: dict[int, threading.Lock] = {}

    def ensure_running(self) -> None:
        """Start this process's sweeper thread if it is not running yet."""
        pid = os.getpid()
        if self._pid == pid or self._stopped:
            return
        with self._start_locks.setdefault(pid, threading.Lock()):
            if self._pid == pid or self._stopped:
                return
            self._stop = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(self._stop,), name="sqlite-session-sweeper", daemon=True
            )
            thread.start()
            self._pid = pid

    def stop(self) -> None:
        """Stop this process's sweeper thread after its current sweep, for good."""
        self._stopped = True
        self._stop.set()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.sweep_once()
            except Exception:  # a background thread must survive a bad sweep
                log.exception("sweeping %s failed", self.directory)
            stop.wait(self.interval)

    def sweep_once(self) -> SweepReport | None:
        """Sweep now unless another process is sweeping or did less than ``interval`` ago."""
        with sweep_lock(self.directory) as lock:
            if lock is None or 0 <= time.time() - lock.last_sweep < self.interval:
                return None  # (a last sweep "in the future" means the clock went back)
            report = sweep(self.directory, grace=self.grace, lock_timeout=self.lock_timeout)
            lock.record_sweep(time.time())
        log.info("sweep of %s: %s", self.directory, report.summary())
        if report.broken or report.unsafe or report.unopened or report.foreign or report.errors:
            log.warning(
                "sweep of %s found %d unreadable, %d planted or read-only and %d unopenable "
                "session files, %d foreign entries, %d errors",
                self.directory,
                report.broken,
                report.unsafe,
                report.unopened,
                report.foreign,
                report.errors,
            )
        return report
