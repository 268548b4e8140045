"""The free-space reserve of the session filesystem: kept for established sessions.

Below it, a new anonymous session (one never established: see :mod:`.format`) is not
stored; established sessions, logins (a regenerate's new file) and logouts still write
into the reserve. Refusing the newcomer, rather than evicting older anonymous sessions
to make room, needs no scan and no choice of victim, and cannot remove a session a
visitor is using: the anonymous sessions already stored expire after their shorter
lifetime, and the sweeper frees their space.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import NamedTuple

log = logging.getLogger("sqlite_session")

WARN_EVERY = 60.0  # seconds between two warnings about refused sessions, per process


class FreeSpace(NamedTuple):
    """The session filesystem's free space and its reserve, in bytes."""

    free: int
    total: int
    reserve: int

    @property
    def below_reserve(self) -> bool:
        return self.free < self.reserve


def free_space(directory: str, fraction: float) -> FreeSpace:
    """``directory``'s filesystem: bytes free to us, its size, and ``fraction`` of it."""
    st = os.statvfs(directory)
    total = st.f_blocks * st.f_frsize
    return FreeSpace(st.f_bavail * st.f_frsize, total, int(total * fraction))


class SpaceReserve:
    """Decides whether a new anonymous session may be stored in ``directory``.

    ``fraction`` of the filesystem is kept free for established sessions (0: no reserve).
    Refusals are counted per process and logged at most once per :data:`WARN_EVERY`.
    """

    def __init__(self, directory: str, fraction: float) -> None:
        self.directory = directory
        self.fraction = fraction
        self.refused = 0  # new anonymous sessions not stored, since this process started
        self._warned_refused = 0
        self._next_warning = 0.0
        self._lock = threading.Lock()

    def admits_anonymous(self) -> bool:
        """True when a new anonymous session may be stored now (one ``statvfs``)."""
        if self.fraction <= 0:
            return True
        try:
            space = free_space(self.directory, self.fraction)
        except OSError:
            return True  # the save itself will meet and report what is wrong
        if not space.below_reserve:
            return True
        self._refuse(space)
        return False

    def _refuse(self, space: FreeSpace) -> None:
        with self._lock:
            self.refused += 1
            now = time.monotonic()
            if now < self._next_warning:
                return
            self._next_warning = now + WARN_EVERY
            newly, self._warned_refused = self.refused - self._warned_refused, self.refused
        log.warning(
            "session filesystem below its reserve (%d of %d bytes free, reserve %d): "
            "%d new anonymous session(s) not stored (%d since start)",
            space.free,
            space.total,
            space.reserve,
            newly,
            self.refused,
        )
