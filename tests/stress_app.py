"""The app the gunicorn tests run (``gunicorn 'stress_app:create_app()'``).

Configured from the environment so every worker process builds the same app:
``SESSION_DIR``, ``SECRET_KEY``, ``STRICT`` ("1" for strict mode), ``LOCK_TIMEOUT``,
``ANONYMOUS_LIFETIME`` (seconds; the interface's default when unset).
Each response reports how long its end-of-request save took (``X-Save-Seconds``,
lock wait included) so the test can report the worst wait under load.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from flask import Flask, Response, jsonify, request, session
from flask.sessions import SessionMixin
from servers import handle_session_errors

from sqlite_session import SqliteSessionInterface


class TimedInterface(SqliteSessionInterface):
    """Reports the duration of each save in a response header."""

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        start = time.perf_counter()
        super().save_session(app, session, response)
        response.headers["X-Save-Seconds"] = f"{time.perf_counter() - start:.6f}"


def _optional_seconds(option: str, variable: str) -> dict[str, float]:
    """``{option: seconds}`` from the environment variable, or nothing when it is unset."""
    value = os.environ.get(variable)
    return {} if value is None else {option: float(value)}


def create_app() -> Flask:
    """The test app; see the module docstring for its environment."""
    app = Flask(__name__)
    app.secret_key = os.environ["SECRET_KEY"]
    app.session_interface = TimedInterface(
        os.environ["SESSION_DIR"],
        strict=os.environ.get("STRICT") == "1",
        lock_timeout=float(os.environ.get("LOCK_TIMEOUT", "5")),
        refresh_fraction=0.0,  # every request moves the expiry (see /kv's permanent)
        **_optional_seconds("anonymous_lifetime", "ANONYMOUS_LIFETIME"),
    )

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.post("/kv")
    def kv() -> Any:
        """Read the keys named in ``read``, then apply ``set`` (a JSON object).

        With ``permanent`` the session becomes permanent: each save then moves its
        Expires, so a response carries the cookie exactly when its save was written.
        """
        seen = {key: session.get(key) for key in request.form.getlist("read")}
        if request.form.get("permanent"):
            session.permanent = True
        for key, value in json.loads(request.form.get("set", "{}")).items():
            session[key] = value
        return jsonify(seen=seen)

    @app.get("/dump")
    def dump() -> Any:
        return jsonify(dict(session))

    @app.post("/login")
    def login() -> str:
        session.regenerate()
        session["user"] = "alice"
        return "ok"

    @app.post("/clear")
    def clear() -> str:
        session.clear()
        return "cleared"

    @app.post("/incr")
    def incr() -> Any:
        """An atomic read-modify-write; reports how long the lock took to get."""
        start = time.perf_counter()
        with session.atomic():
            waited = time.perf_counter() - start
            session["n"] = session.get("n", 0) + 1
        return jsonify(waited=waited)

    handle_session_errors(app)
    return app
