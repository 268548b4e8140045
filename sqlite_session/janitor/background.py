"""In-app sweeping: a thread per worker process, for hosts without cron."""

from __future__ import annotations

import logging
import os
import threading
import time

from .lock import sweep_lock
from .report import SweepReport
from .sweeping import DEFAULT_GRACE, DEFAULT_LOCK_TIMEOUT, sweep

log = logging.getLogger("sqlite_session")


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
        self._last_sweep = 0.0  # this process's own, for a directory with no room for the record
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
            if lock is None:
                return None
            last_sweep = max(lock.last_sweep, self._last_sweep)
            if 0 <= time.time() - last_sweep < self.interval:
                return None  # (a last sweep "in the future" means the clock went back)
            report = sweep(self.directory, grace=self.grace, lock_timeout=self.lock_timeout)
            self._last_sweep = time.time()
            lock.record_sweep(self._last_sweep)
        log.info("sweep of %s: %s", self.directory, report.summary())
        if report.nothing_of_ours:
            log.warning("sweep of %s: no session files in it, only foreign entries", self.directory)
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
