"""Fixation-safe logins with Flask-Login, when it is installed (OWASP ASVS 3.2.1, 3.3.1).

Flask-Login stays optional: nothing here imports it unless it is installed, and the
package never depends on it. When it is, :meth:`SqliteSessionInterface.check_app`
connects two receivers to its signals for each app (turned off by the interface
option ``flask_login=False``):

* ``user_logged_in`` (``login_user()``) and ``user_loaded_from_cookie`` (a login
  through the remember-me cookie): the session gets a new id at the end of the request,
  so an id planted before the login never leads to the logged-in session.
* ``user_logged_out`` (``logout_user()``): the session is cleared, so its id leads to
  nothing any more; anything the request writes after the logout (a flash message) goes
  under a new id. Flask-Login's own instruction to delete the remember-me cookie
  (``session["_remember"] = "clear"``) is kept across the clear: without it the cookie
  would log the user straight back in.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import flask
from flask import Flask

from .session import PerKeySession

# Flask-Login's key for "delete the remember-me cookie at the end of this request".
_REMEMBER_KEY = "_remember"


def flask_login_installed() -> bool:
    """True when Flask-Login can be imported."""
    return importlib.util.find_spec("flask_login") is not None


def _current() -> PerKeySession | None:
    """The request's session, when it is one of ours (another interface: left alone)."""
    session = flask.globals.request_ctx.session
    return session if isinstance(session, PerKeySession) else None


def regenerate_at_login(sender: Flask, **extra: Any) -> None:
    """Receiver of Flask-Login's login signals: a new session id for the logged-in user."""
    session = _current()
    if session is not None:
        session.regenerate()


def end_at_logout(sender: Flask, **extra: Any) -> None:
    """Receiver of ``user_logged_out``: the old id ends (clear-then-write)."""
    session = _current()
    if session is None:
        return
    remember = session.get(_REMEMBER_KEY)
    session.clear()
    if remember == "clear":
        session[_REMEMBER_KEY] = remember


def connect_flask_login(app: Flask) -> bool:
    """Connect the receivers to Flask-Login's signals sent by ``app``; False without it."""
    if not flask_login_installed():
        return False
    signals: Any = importlib.import_module("flask_login.signals")  # (ships no type hints)
    # Module-level functions, so blinker's weak references to them never die.
    signals.user_logged_in.connect(regenerate_at_login, sender=app)
    signals.user_loaded_from_cookie.connect(regenerate_at_login, sender=app)
    signals.user_logged_out.connect(end_at_logout, sender=app)
    return True
