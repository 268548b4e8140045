"""``sqlite_session.session``: the request's session with its real type, for mypy users."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.globals import request_ctx

from sqlite_session import PerKeySession, current_session, session


def test_proxy_is_the_requests_session(app: Flask) -> None:
    @app.post("/login")
    def login() -> str:
        session["user"] = "ada"
        session.regenerate()
        assert current_session() is request_ctx.session
        assert isinstance(current_session(), PerKeySession)
        return "ok"

    client = app.test_client()
    assert client.post("/login").status_code == 200
    with client.session_transaction() as stored:
        assert stored["user"] == "ada"


def test_proxy_explains_a_foreign_session_interface() -> None:
    app = Flask(__name__)
    app.secret_key = "x"

    @app.get("/")
    def index() -> str:
        with pytest.raises(RuntimeError, match="not a sqlite_session session"):
            session.regenerate()
        return "ok"

    assert app.test_client().get("/").status_code == 200


def test_proxy_outside_a_request() -> None:
    with pytest.raises(RuntimeError):
        session.get("x")


def test_app_code_using_the_proxy_passes_mypy_strict(
    tmp_path: Path, make_app: Callable[..., Flask]
) -> None:
    source = tmp_path / "app.py"
    source.write_text(
        "from flask import Flask\n"
        "from sqlite_session import SqliteSessionInterface, session\n\n"
        "app = Flask(__name__)\n"
        'app.session_interface = SqliteSessionInterface("/dev/shm/example")\n\n\n'
        '@app.post("/login")\n'
        "def login() -> str:\n"
        '    session["user_id"] = 1\n'
        "    session.regenerate()\n"
        "    with session.atomic():\n"
        '        session["n"] = int(session.get("n", 0)) + 1\n'
        '    return "ok"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(source)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
