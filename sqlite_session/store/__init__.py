"""One SQLite file per session: the only package that speaks SQLite (see :mod:`.store`)."""

from .store import (
    PAGE_SIZE,
    REVALIDATE_AFTER,
    SUFFIX,
    TEMP_PREFIX,
    WAL_SIZE_LIMIT,
    Changes,
    Lease,
    Opened,
    OpenStatus,
    SessionStore,
    StorageBroken,
    SweepOutcome,
    Transaction,
    WriteOutcome,
)

__all__ = [
    "PAGE_SIZE",
    "REVALIDATE_AFTER",
    "SUFFIX",
    "TEMP_PREFIX",
    "WAL_SIZE_LIMIT",
    "Changes",
    "Lease",
    "OpenStatus",
    "Opened",
    "SessionStore",
    "StorageBroken",
    "SweepOutcome",
    "Transaction",
    "WriteOutcome",
]
