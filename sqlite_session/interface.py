"""Flask glue: the cookie in and out, a lazy session per request, the save at the end.

This is the only module that speaks Flask's request/response API; the session's data
lives in :mod:`.session` and its storage in :mod:`.store`.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Flask, Request, Response
from flask import request as current_request
from flask.sessions import SessionInterface, SessionMixin

from .cookie_header import checked_samesite, cookie_value, vary_on_cookie
from .cookie_prefix import check_cookie_prefix
from .ids import IdSigner, validate_node
from .janitor import BackgroundSweeper
from .logins import connect_flask_login
from .options import check_options, seconds, warn_if_too_many_files
from .reports import SessionReports
from .serializer import Serializer, TaggedJSONSerializer
from .session import PerKeySession
from .settings import SessionSettings
from .store import SessionStore
from .store.directory import prepare_directory, resolve_session_path

log = logging.getLogger("sqlite_session")

MiB = 1024 * 1024


class SqliteSessionInterface(SessionReports, SessionInterface):
    """Server-side sessions, one SQLite file per session under ``path``.

    ``path`` is created (mode 0700) if missing. It must be a writable directory owned
    by the current user and writable by nobody else (no group or other write bit: fix
    one with ``chmod 700 PATH``); anything else, or an empty path, raises
    :class:`~sqlite_session.SessionDirectoryError` here, not at the first request. A
    relative path is resolved once, against the working directory at construction, and
    the absolute path is logged; symlinks in the path are resolved once too
    (``self.path`` is the real path). A directory removed while the app runs is
    re-created, with the same checks, by the first save that needs it.

    Options (all keyword-only; each is checked for type and range here, and a bad value
    raises :class:`ValueError` naming it: see :mod:`.options`):

    ``serializer``
        Value encoding; default Flask's tagged JSON. Pass
        :class:`~sqlite_session.PickleSerializer` to store arbitrary objects (only where
        nobody else can write to ``path``: unpickling runs code).
    ``save_on_error``
        Also save when the response status is 5xx (default False: a view that failed
        half-way must not persist half its changes).
    ``lock_timeout``
        Seconds a save or ``session.atomic()`` waits for the session's write lock
        before :class:`~sqlite_session.SessionLockTimeout` (default 5).
    ``strict``
        Raise :class:`~sqlite_session.SessionConflictError` at save when a key this
        request writes was changed by another request since this one read it
        (default False: last writer wins per key).
    ``max_value_bytes`` / ``max_session_bytes`` / ``max_keys``
        Limits enforced with :class:`~sqlite_session.SessionTooLarge` naming the key
        (defaults 1 MiB, 8 MiB, 10,000; None disables one).
    ``node``
        A name tagged onto new session ids (``web1.<token>``) so a load balancer can
        route a session back to the machine that holds it.
    ``regenerate_grace``
        Seconds a regenerated session's old id is kept as a tombstone (default 60).
    ``refresh_fraction``
        A request, reading or writing, pushes the expiry forward only once this fraction
        of the lifetime has passed since it last moved (default 0.1; from 0 up to, not
        including, 1); a write before then stores only its keys. A session in use thus
        expires between ``1 - refresh_fraction`` and 1 lifetime after its last request.
    ``connection_cache_size``
        Open SQLite connections kept per process (default 128). Each holds three file
        descriptors (the file, its ``-wal`` and ``-shm``); a size that would use more
        than half of the process's descriptor limit logs a warning.
    ``allow_unsafe_directory``
        Accept a directory owned by another user or writable by its group or others,
        or under a directory others may write to (default False).
    ``flask_login``
        When Flask-Login is installed, give the session a new id at ``login_user()`` (and
        at a remember-me login) and end it at ``logout_user()`` (default True; see
        :mod:`.logins`).
    ``user_key``
        The session key whose value is the user the session belongs to (default
        ``"_user_id"``, Flask-Login's): a request that sets, changes or deletes it (or
        clears the session) records the session in, or drops it from, that user's list
        (see :meth:`user_sessions`). :meth:`PerKeySession.set_user` does the same
        without the key.
    ``record_client``
        Record the user agent and the client's network (a /24 or /48, never the
        address) when a session gains its user, shown by :meth:`user_sessions`
        (default False).
    ``absolute_lifetime``
        Seconds (or a ``timedelta``) after which a session ends however active it is,
        counted from its creation or its last regenerate (a login), OWASP ASVS 3.3.2
        (default None: no limit). Every expiry written is capped there, so reads and
        the sweeper end it like an idle session.
    ``anonymous_lifetime``
        Seconds (or a ``timedelta``) an *anonymous* session lives without a request:
        one never established by :meth:`~PerKeySession.regenerate` (a login) nor given
        a user (default 3600; None: the app's lifetime). Long enough for a form's CSRF
        token, short enough that a crawler's sessions go within the hour.
    ``reserve_fraction``
        The fraction of the session filesystem kept free for established sessions
        (default 0.1; 0: none). Below it a new anonymous session is not stored (the
        response is unchanged, no cookie is set, a warning is logged at most once a
        minute); established sessions, logins and logouts write into the reserve.
    ``sweep_every``
        Sweep expired sessions from inside the app, about once per this many seconds
        (default None: off; use ``sqlite-session sweep`` from cron or a systemd timer
        instead). A background thread per worker process, started at its first request;
        at most one process sweeps the directory at a time. See :mod:`.janitor`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        serializer: Serializer | None = None,
        save_on_error: bool = False,
        lock_timeout: float = 5.0,
        strict: bool = False,
        max_value_bytes: int | None = 1 * MiB,
        max_session_bytes: int | None = 8 * MiB,
        max_keys: int | None = 10_000,
        node: str | None = None,
        regenerate_grace: float = 60.0,
        refresh_fraction: float = 0.1,
        connection_cache_size: int = 128,
        allow_unsafe_directory: bool = False,
        sweep_every: float | None = None,
        flask_login: bool = True,
        user_key: str = "_user_id",
        record_client: bool = False,
        absolute_lifetime: float | timedelta | None = None,
        anonymous_lifetime: float | timedelta | None = 3600.0,
        reserve_fraction: float = 0.1,
    ) -> None:
        check_options(locals())  # the keyword options above, before anything is built
        absolute_lifetime = seconds(absolute_lifetime)
        anonymous_lifetime = seconds(anonymous_lifetime)
        self.path = prepare_directory(
            resolve_session_path(path), allow_unsafe=allow_unsafe_directory
        )
        self.save_on_error = save_on_error
        self.store = SessionStore(
            self.path,
            busy_timeout=lock_timeout,
            max_session_bytes=max_session_bytes,
            max_keys=max_keys,
            connection_cache_size=connection_cache_size,
            allow_unsafe_directory=allow_unsafe_directory,
            refresh_fraction=refresh_fraction,
            absolute_lifetime=absolute_lifetime,
            reserve_fraction=reserve_fraction,
        )
        self.settings = SessionSettings(
            store=self.store,
            serializer=serializer or TaggedJSONSerializer(),
            node=validate_node(node),
            max_value_bytes=max_value_bytes,
            strict=strict,
            regenerate_grace=regenerate_grace,
            refresh_fraction=refresh_fraction,
            user_key=user_key,
            record_client=record_client,
            anonymous_lifetime=anonymous_lifetime,
        )
        warn_if_too_many_files(connection_cache_size)
        self._signers: dict[tuple[Any, ...], IdSigner] = {}
        self.flask_login = flask_login
        self.sweeper = BackgroundSweeper(self.path, sweep_every) if sweep_every else None
        # The apps already checked by check_app (the last one, to skip the set lookup).
        self._checked_apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        self._last_checked: weakref.ref[Flask] | None = None
        self._checking = threading.Lock()

    def check_app(self, app: Flask) -> None:
        """Check ``app``'s cookie configuration and hook its logins, once per app.

        Called by :meth:`SqliteSession.init_app` at start-up, and at the first request
        of an app whose ``session_interface`` was set by hand. Raises
        :class:`~sqlite_session.SessionConfigError` for a cookie browsers would drop
        (a ``__Host-`` or ``__Secure-`` name without its attributes). With the
        ``flask_login`` option, connects to Flask-Login's signals (see :mod:`.logins`).
        """
        with self._checking:
            if app not in self._checked_apps:
                check_cookie_prefix(
                    self.get_cookie_name(app),
                    secure=self.get_cookie_secure(app),
                    path=self.get_cookie_path(app),
                    domain=self.get_cookie_domain(app),
                )
                if self.flask_login:
                    connect_flask_login(app)
                self._checked_apps.add(app)
            self._last_checked = weakref.ref(app)

    def _signer(self, app: Flask) -> IdSigner:
        keys = (*(app.config.get("SECRET_KEY_FALLBACKS") or ()), app.secret_key)
        signer = self._signers.get(keys)
        if signer is None:
            signer = self._signers[keys] = IdSigner(keys)
        return signer

    def open_session(self, app: Flask, request: Request) -> PerKeySession | None:
        """A lazy session: no cookie parsing, signature check or file access until used."""
        if self.sweeper is not None:
            self.sweeper.ensure_running()  # off the request's path: a background thread
        if self._last_checked is None or self._last_checked() is not app:
            self.check_app(app)
        if not app.secret_key:
            return None  # Flask then uses its NullSession, which explains the missing key

        def read_sid() -> str | None:
            value = cookie_value(request, self.get_cookie_name(app))
            return self._signer(app).unsign(value) if value else None

        def lifetime() -> float:
            # What app.permanent_session_lifetime gives (a timedelta, or seconds as
            # Flask converts them), without its descriptor and converter calls.
            value = app.config["PERMANENT_SESSION_LIFETIME"]
            if not isinstance(value, timedelta):
                value = timedelta(seconds=value)
            return value.total_seconds()

        return PerKeySession(self.settings, read_sid, lifetime)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Save the request's changes and set, refresh or delete the cookie."""
        if not isinstance(session, PerKeySession) or not (session.accessed or session.touched()):
            return  # never looked at (most requests): nothing to save, release or vary on
        try:
            self._save(app, session, response)
        finally:
            session.release()  # the session file's connection, held since the first read

    def _save(self, app: Flask, session: PerKeySession, response: Response) -> None:
        varied = session.accessed
        if varied:
            vary_on_cookie(response)
        if not session.touched():
            return
        if response.status_code >= 500 and not self.save_on_error:
            return
        attributes: dict[str, Any] | None = None

        def check_cookie() -> None:
            # Everything that can refuse the cookie (a bad key or SameSite value) is
            # checked before a write that creates a file or ends with a cookie to set or
            # delete: never a file whose id no client will hold, nor a 500 after a write.
            # A request that reads, or writes under the id its client already holds
            # (most requests), skips the six lookups.
            nonlocal attributes
            self._signer(app)
            attributes = self._cookie_attributes(app)

        if app.config.get("SECRET_KEY_FALLBACKS") and session.pending():
            check_cookie()  # the write may end with the cookie re-signed
        result = session.save(bool(app.config["SESSION_REFRESH_EACH_REQUEST"]), check_cookie)
        if result.remove_cookie:
            attributes = attributes or self._cookie_attributes(app)
            response.delete_cookie(self.get_cookie_name(app), **attributes)
        elif result.sid is None:
            return
        else:
            # The cookie holds only the id, plus Expires for a permanent session: a new id,
            # a permanent session's moved expiry, or a change of the permanent flag (which
            # adds or drops Expires) outdate it. Anything else leaves the client's cookie
            # right, and it is not re-sent (Flask re-sends it whenever the session is
            # modified: there the data is in the cookie), unless it was signed with a
            # fallback key (then it is re-signed now).
            outdated = (
                result.new_id
                or result.permanent_changed
                or (result.permanent and result.expiry_moved)
            )
            if not outdated and not app.config.get("SECRET_KEY_FALLBACKS"):
                return
            name = self.get_cookie_name(app)
            value = self._signer(app).sign(result.sid)
            if not outdated and cookie_value(current_request, name) == value:
                return
            expires = None
            if result.permanent and result.expires_at is not None:
                expires = datetime.fromtimestamp(result.expires_at, tz=timezone.utc)
            attributes = attributes or self._cookie_attributes(app)
            response.set_cookie(name, value, expires=expires, **attributes)
        if not varied:
            vary_on_cookie(response)

    def _cookie_attributes(self, app: Flask) -> dict[str, Any]:
        """The attributes shared by the cookie set and its deletion (ValueError if invalid)."""
        return {
            "domain": self.get_cookie_domain(app),
            "path": self.get_cookie_path(app),
            "secure": self.get_cookie_secure(app),
            "partitioned": self.get_cookie_partitioned(app),
            "samesite": checked_samesite(self.get_cookie_samesite(app)),
            "httponly": self.get_cookie_httponly(app),
        }
