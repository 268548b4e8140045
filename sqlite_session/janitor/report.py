"""What a sweep tells its caller: a :class:`SweepReport` at the end, events on the way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Event = Callable[[str, str], None]
"""A per-file notification: (what happened, file name), e.g. ``("removed", "abc.session")``."""


@dataclass
class SweepReport:
    """What one sweep saw and did (in a dry run: what it would have done)."""

    sessions: int = 0  # session files seen
    removed: int = 0  # expired sessions removed
    removed_unopened: int = 0  # ... of which on their lstat alone, without opening SQLite
    fresh: int = 0  # skipped with one stat: the mirrored expiry in the future (or just past)
    kept: int = 0  # opened, but still live under the lock (its mtime mirrored no expiry)
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
    foreign: int = 0  # entries we never create (other names, symlinks): left alone
    directories: int = 0  # subdirectories (lost+found...): left alone
    freed_bytes: int = 0  # allocated to the files removed (st_blocks), sessions and leftovers
    errors: int = 0  # files we could not remove (permissions...)
    index_pruned: int = 0  # user index entries of sessions that are gone
    entries: int = 0  # directory entries looked at
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def nothing_of_ours(self) -> bool:
        """True when the directory holds files, none of them of ours: the wrong directory?"""
        ours = self.sessions + self.temp_removed + self.journals_kept + self.journals_removed
        return self.foreign > 0 and ours == 0

    def summary(self) -> str:
        """The one-line summary: ``removed N expired of M sessions, freeing B, in T s``
        plus any extras."""
        verb = "would remove" if self.dry_run else "removed"
        done = "to remove" if self.dry_run else "removed"
        freeing = "to free" if self.dry_run else "freeing"
        line = (
            f"{verb} {self.removed} expired of {self.sessions} sessions, "
            f"{freeing} {_size(self.freed_bytes)}, in {self.seconds:.2f} s"
        )
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
                (self.directories, "subdirectories (left alone)"),
                (self.errors, "errors"),
            )
            if count
        ]
        suffix = "; " + ", ".join(extras) if extras else ""
        return line + suffix + (" (dry run)" if self.dry_run else "")


def _size(nbytes: int) -> str:
    """``nbytes`` for a person: bytes, KiB or MiB."""
    if nbytes < 1024:
        return f"{nbytes} bytes"
    if nbytes < 1024 * 1024:
        return f"{nbytes / 1024:.0f} KiB"
    return f"{nbytes / (1024 * 1024):.1f} MiB"
