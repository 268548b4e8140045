"""The Flask extension form: ``SqliteSession(app)`` or ``SqliteSession().init_app(app)``.

Configuration comes from ``app.config`` keys prefixed ``SQLITE_SESSION_``:
``SQLITE_SESSION_PATH`` (the session directory, required) and one key per keyword option
of :class:`~sqlite_session.SqliteSessionInterface`, its name upper-cased
(``lock_timeout`` -> ``SQLITE_SESSION_LOCK_TIMEOUT``). The keys are derived from the
interface's signature, so an option added there is configurable here without a second
list that could drift.

A key with the prefix that is not one of those raises at :meth:`SqliteSession.init_app`:
a typo such as ``SQLITE_SESSION_LOCK_TIMOUT`` must not silently leave the default in
force. So does a value of the wrong type or out of range, named by its config key (the
string ``"false"`` from an environment variable is truthy;
``app.config.from_prefixed_env()`` parses it into a real bool).
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from .interface import SqliteSessionInterface
from .options import check_option

log = logging.getLogger("sqlite_session")

PREFIX = "SQLITE_SESSION_"
PATH_KEY = PREFIX + "PATH"
EXTENSION_NAME = "sqlite_session"


def interface_options() -> dict[str, inspect.Parameter]:
    """The keyword-only options of :class:`SqliteSessionInterface`, by config key."""
    signature = inspect.signature(SqliteSessionInterface.__init__, eval_str=True)
    return {
        PREFIX + name.upper(): parameter
        for name, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


def options_from_config(config: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The session path and the interface options set in ``config``.

    Raises :class:`ValueError` for a missing path, an unknown ``SQLITE_SESSION_*`` key
    (with the closest known key, when there is one) or a value of the wrong type or range.
    """
    known = interface_options()
    unknown = sorted(k for k in config if k.startswith(PREFIX) and k != PATH_KEY and k not in known)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, [PATH_KEY, *known], n=1)
            hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise ValueError(
            f"unknown sqlite_session config key(s): {', '.join(hints)}. Known keys: "
            f"{', '.join([PATH_KEY, *known])}"
        )
    if config.get(PATH_KEY) is None:
        raise ValueError(
            f"{PATH_KEY} is not set: set it to the session directory, for example "
            "a tmpfs such as /run/myapp/sessions or /dev/shm/myapp-sessions"
        )
    options: dict[str, Any] = {}
    for key, parameter in known.items():
        if key in config:
            check_option(parameter.name, config[key], label=key)
            options[parameter.name] = config[key]
    return config[PATH_KEY], options


class SqliteSession:
    """Install :class:`SqliteSessionInterface` on an app from its config.

    ``SqliteSession(app)`` configures ``app`` at once; ``SqliteSession()`` followed by
    ``init_app(app)`` serves application factories, and one instance may configure any
    number of apps (it keeps no reference to them). The interface is stored as
    ``app.extensions["sqlite_session"]`` and set as ``app.session_interface``.
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> SqliteSessionInterface:
        """Build the interface from ``app.config`` and install it; return it."""
        path, options = options_from_config(app.config)
        interface = SqliteSessionInterface(path, **options)
        interface.check_app(app)
        app.session_interface = interface
        app.extensions[EXTENSION_NAME] = interface
        log.debug("sessions of app %r in %s (options %r)", app.import_name, interface.path, options)
        return interface
