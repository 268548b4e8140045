"""The janitor: removes expired session files; shared by the CLI and in-app sweeping.

What a sweep removes, and what it never touches, is set out in :mod:`.sweeping`, the
pass over a directory. Around it: :mod:`.entries` tells the kinds of files apart by
name, :mod:`.report` is what a sweep returns, :mod:`.lock` keeps to one sweep of a
directory at a time, :mod:`.background` sweeps from inside the app, and
:mod:`.directory_stats` counts a directory for monitoring.
"""

from .background import BackgroundSweeper
from .directory_stats import DirectoryStats, stats
from .lock import RECORD_NAME, SweepLock, sweep_lock
from .report import Event, SweepReport
from .sweeping import DEFAULT_GRACE, DEFAULT_LOCK_TIMEOUT, LSTAT_GRACE, PROGRESS_EVERY, sweep

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_LOCK_TIMEOUT",
    "LSTAT_GRACE",
    "PROGRESS_EVERY",
    "RECORD_NAME",
    "BackgroundSweeper",
    "DirectoryStats",
    "Event",
    "SweepLock",
    "SweepReport",
    "stats",
    "sweep",
    "sweep_lock",
]
