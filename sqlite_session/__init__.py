"""sqlite_session: server-side Flask sessions, one SQLite file per session, one row per key.

    from sqlite_session import SqliteSessionInterface
    app.session_interface = SqliteSessionInterface("/dev/shm/myapp-sessions")

or, configured from ``app.config["SQLITE_SESSION_*"]``, ``SqliteSession(app)``.
"""

from .current import current_session, session
from .errors import (
    SessionConfigError,
    SessionConflictError,
    SessionDirectoryError,
    SessionError,
    SessionLockTimeout,
    SessionRegenerateError,
    SessionStorageFull,
    SessionStorageUnavailable,
    SessionTooLarge,
)
from .ext import SqliteSession
from .interface import SqliteSessionInterface
from .reports import SessionFileInfo, UserSession
from .serializer import PickleSerializer, Serializer, TaggedJSONSerializer
from .session import PerKeySession

__all__ = [
    "PerKeySession",
    "PickleSerializer",
    "Serializer",
    "SessionConfigError",
    "SessionConflictError",
    "SessionDirectoryError",
    "SessionError",
    "SessionFileInfo",
    "SessionLockTimeout",
    "SessionRegenerateError",
    "SessionStorageFull",
    "SessionStorageUnavailable",
    "SessionTooLarge",
    "SqliteSession",
    "SqliteSessionInterface",
    "TaggedJSONSerializer",
    "UserSession",
    "current_session",
    "session",
]
__version__ = "0.1.0"
