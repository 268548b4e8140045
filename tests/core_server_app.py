"""A tiny app for the real-server test (tests/deployment/test_server.py), served by gunicorn.

Configured from the environment so that every worker process builds the same app on
the same session directory: ``CORE_SESSION_DIR`` and ``CORE_SECRET_KEY``.
"""

from __future__ import annotations

import os
import time

from flask import Flask, jsonify, session
from werkzeug.wrappers import Response

from sqlite_session import SqliteSessionInterface


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.environ["CORE_SECRET_KEY"]
    app.session_interface = SqliteSessionInterface(os.environ["CORE_SESSION_DIR"])

    @app.get("/seed")
    def seed() -> str:
        session["seed"] = os.getpid()
        return ""

    @app.get("/write/<key>")
    def write(key: str) -> str:
        seen = len(session)
        time.sleep(0.05)  # keep requests of the session overlapping
        session[key] = {"pid": os.getpid(), "seen": seen}
        return str(os.getpid())

    @app.get("/block/<key>")
    def block(key: str) -> str:
        """Write ``key``, then wait until the test creates the file named in the env."""
        session[key] = os.getpid()
        flag = os.environ["CORE_FLAG_FILE"]
        with open(flag + ".inside", "w") as marker:
            marker.write(str(os.getpid()))
        for _ in range(400):
            if os.path.exists(flag):
                return str(os.getpid())
            time.sleep(0.025)
        return "timed out"

    @app.get("/dump")
    def dump() -> Response:
        return jsonify(sorted(session))

    return app
