"""``sqlite_session.session``: the current request's session, typed as :class:`PerKeySession`.

``flask.session`` is typed :class:`~flask.sessions.SessionMixin`, so ``session.regenerate()``
fails ``mypy --strict`` in an app. This proxy is the same object with its real type; used
outside a request, or in an app whose session interface is not ours, it raises a
:class:`RuntimeError` that says so.
"""

from __future__ import annotations

from typing import cast

import flask
from werkzeug.local import LocalProxy

from .session import PerKeySession


def current_session() -> PerKeySession:
    """The session of the request being handled (a :class:`RuntimeError` outside one)."""
    found = flask.globals.request_ctx.session
    if not isinstance(found, PerKeySession):
        raise RuntimeError(
            f"the session is a {type(found).__name__}, not a sqlite_session session: set "
            "app.session_interface = SqliteSessionInterface(...) or use SqliteSession(app)"
        )
    return found


session = cast(PerKeySession, LocalProxy(current_session))
