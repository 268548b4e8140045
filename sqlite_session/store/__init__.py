"""One SQLite file per session: the only package that speaks SQLite.

:mod:`.format` describes the file, :mod:`.connection` the journal mode and the
connections, :mod:`.removal` the protocol that removes a file. :class:`SessionStore` (in
:mod:`.store`) is what the rest of the package uses. The measurements behind these
choices are in docs/design.md.
"""

from .changes import Changes, UserChange, WriteOutcome
from .checkout import REVALIDATE_AFTER
from .connection import WAL_SIZE_LIMIT
from .errors import StorageBroken
from .format import PAGE_SIZE, SUFFIX, TEMP_PREFIX, FileState, Meta, OpenStatus, expiry_moves
from .handle import SessionHandle
from .removal import SweepOutcome
from .store import Opened, SessionStore
from .transaction import Transaction

__all__ = [
    "PAGE_SIZE",
    "REVALIDATE_AFTER",
    "SUFFIX",
    "TEMP_PREFIX",
    "WAL_SIZE_LIMIT",
    "Changes",
    "FileState",
    "Meta",
    "OpenStatus",
    "Opened",
    "SessionHandle",
    "SessionStore",
    "StorageBroken",
    "SweepOutcome",
    "Transaction",
    "UserChange",
    "WriteOutcome",
    "expiry_moves",
]
