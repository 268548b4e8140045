"""Exceptions raised by sqlite_session.

Every error the store raises on purpose derives from :class:`SessionError`, so an
application can register one Flask error handler for all of them.
"""

from __future__ import annotations


class SessionError(Exception):
    """Base class of every error sqlite_session raises on purpose."""


class SessionConfigError(SessionError, ValueError):
    """The app's configuration cannot work; raised when the app starts, never per request.

    For example a ``SESSION_COOKIE_NAME`` with the ``__Host-`` prefix but without
    ``SESSION_COOKIE_SECURE``: browsers would drop the cookie without a word. Raised by
    :meth:`~sqlite_session.SqliteSession.init_app`, or at the first request of an app
    whose ``session_interface`` was set by hand.
    """


class SessionDirectoryError(SessionError):
    """The session directory is unusable (not a directory, not writable, unsafe owner or mode).

    Raised when :class:`~sqlite_session.SqliteSessionInterface` is constructed, so a
    misconfigured deployment fails at start-up rather than at the first request.
    """


class SessionLockTimeout(SessionError):
    """The session's write lock could not be taken within the configured timeout.

    Raised by :meth:`~sqlite_session.PerKeySession.atomic` and by saves that waited longer
    than ``lock_timeout`` seconds. Nothing was written.
    """


class SessionConflictError(SessionError):
    """In strict mode: another request changed a key since this request read it.

    Nothing of the failed save was written; ``keys`` names the keys in conflict.
    """

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        super().__init__(f"session keys changed by a concurrent request: {', '.join(keys)}")


class SessionTooLarge(SessionError):
    """A value, the whole session or its number of keys exceeds a configured limit.

    ``key`` names the key whose write crossed the limit.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


class SessionRegenerateError(SessionError):
    """``session.regenerate()`` could not create the session's file under its new id.

    Nothing was changed: the session keeps its old id and all its data, and nothing of
    the request was saved. The cause (often a resource limit, such as no file
    descriptor left) is chained as ``__cause__``; a later attempt may succeed.
    """


class SessionStorageFull(SessionError):
    """The session directory's filesystem is full; the save was rolled back.

    What was stored before is intact; the next save after space is freed works.
    """


class SessionStorageUnavailable(SessionError):
    """The session storage cannot be used right now; nothing was lost.

    The process or the system ran short of a resource (file descriptors, memory) while
    opening a session file, or a file being created was removed under the request. The
    stored session and the client's cookie are kept as they were: the same request
    retried later finds them. An app can map it to 503 Service Unavailable with
    ``@app.errorhandler(SessionStorageUnavailable)``.
    """
