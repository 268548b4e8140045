"""What a write brings to a session file, and what it did: the store's write records."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from .format import Account


class WriteOutcome(Enum):
    """What a write did to the session file.

    ``MOVED``: this write regenerated the session; ``SUPERSEDED``: another request had
    (both leave the file in :attr:`FileState.MOVED`).
    """

    WRITTEN = "written"
    REMOVED = "removed"  # the session became empty; its file is gone
    MOVED = "moved"  # this write regenerated the session: its data now lives under the new id
    GONE = "gone"  # the session had expired or been removed before this write; nothing written
    SUPERSEDED = "superseded"  # another request regenerated the session; nothing written


class UserChange(NamedTuple):
    """A request's change of the user its session belongs to (a login, a logout).

    ``user`` None: the session belongs to nobody from now on. ``agent`` and ``address``
    are what the app records of the client at a login (None when it records nothing).
    """

    user: str | None
    agent: str | None = None
    address: str | None = None


@dataclass
class Changes:
    """A batch of changes to one session, applied in one transaction.

    ``expected`` enables strict mode: for each key, the version this request read
    (None: the key was absent); a key not listed must not have been written since the
    change counter ``baseline`` that the request saw when it opened the session.
    ``user``: the session's user changes (None: it does not, and the batch costs no
    statement for accounts). ``account``: what a new file records of its user (a move).
    ``anonymous``: the session is not established by this batch (see :mod:`.format`):
    a new file, a move's copy included, records it.
    A write caps ``expires_at`` at the store's absolute lifetime (see
    :meth:`SessionStore.capped`) and leaves the expiry it stored there.
    """

    upserts: dict[str, bytes] = field(default_factory=dict)
    deletes: set[str] = field(default_factory=set)
    clear: bool = False
    permanent: bool = False
    expires_at: float = 0.0
    expected: dict[str, int | None] | None = None
    baseline: int = 0
    move_to: str | None = None
    moved_grace: float = 0.0
    user: UserChange | None = None
    account: Account | None = None
    anonymous: bool = False  # a new file: the session was never established

    @property
    def empties_the_session(self) -> bool:
        """True for a batch that clears the session and writes nothing (a logout)."""
        return self.clear and not self.upserts and self.move_to is None

    @property
    def value_bytes(self) -> int:
        """The size of the new values."""
        return sum(len(value) for value in self.upserts.values())
