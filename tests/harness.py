"""Harness of the reliability tests: the servers they run and the app-side error handling.

The servers themselves live in :mod:`servers` (shared with the deployment tests); the
reliability tests' gunicorn is the stress app's.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify
from servers import cookie_of, threaded_server
from servers import stress_gunicorn as gunicorn
from werkzeug.exceptions import InternalServerError

from sqlite_session import SessionError, SqliteSessionInterface

__all__ = [
    "app_answering_session_errors",
    "cookie_of",
    "gunicorn",
    "handle_session_errors",
    "threaded_server",
]


def handle_session_errors(app: Flask) -> None:
    """The documented way to turn session errors into a response of the app's choice.

    Errors raised in a view (``atomic()``) reach ``errorhandler(SessionError)``; errors
    raised by the end-of-request save reach Flask's 500 handler, wrapped.
    """

    @app.errorhandler(SessionError)
    def in_view(exc: SessionError) -> tuple[Any, int]:
        return jsonify(error=type(exc).__name__, where="view"), 409

    @app.errorhandler(InternalServerError)
    def at_save(exc: InternalServerError) -> tuple[Any, int]:
        original = exc.original_exception
        name = type(original).__name__ if isinstance(original, SessionError) else "other"
        return jsonify(error=name, where="save"), 409 if name != "other" else 500


def app_answering_session_errors(directory: str | os.PathLike[str]) -> Flask:
    """An app on ``directory`` that answers session errors through :func:`handle_session_errors`.

    Not in TESTING mode: errors reach the handlers instead of the test client.
    """
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test secret")
    app.session_interface = SqliteSessionInterface(directory)
    handle_session_errors(app)
    return app
