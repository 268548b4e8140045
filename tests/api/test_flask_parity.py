"""Idioms of apps written for Flask's cookie session, run against both interfaces.

The same view code runs on Flask's own ``SecureCookieSessionInterface`` and on ours;
what the views see and whether the cookie carries Expires must agree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from core_helpers import session_path, sid_of
from flask import Flask, session
from flask.sessions import SecureCookieSessionInterface
from flask.testing import FlaskClient

from sqlite_session import SqliteSessionInterface


def parity_app(interface: Any) -> FlaskClient:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test secret", TESTING=True)
    app.session_interface = interface

    @app.post("/login")
    def login() -> str:
        session["user"] = "ann"
        session.permanent = True
        return ""

    @app.post("/login-plain")
    def login_plain() -> str:
        session["user"] = "ann"
        return ""

    @app.post("/rotate")
    def rotate() -> str:
        data = dict(session)
        session.clear()
        session.update(data)
        return ""

    @app.post("/mark")
    def mark() -> str:
        session["_permanent"] = True
        return ""

    @app.post("/unmark")
    def unmark() -> str:
        del session["_permanent"]
        return ""

    @app.get("/show")
    def show() -> dict[str, Any]:
        return {
            "permanent": session.permanent,
            "data": dict(session),
            "copy": session.copy(),
            "has_flag": "_permanent" in session,
            "flag": session.get("_permanent"),
        }

    return app.test_client()


def expires_sent(response: Any) -> bool | None:
    """Whether the response's session cookie carries Expires (None: no cookie sent)."""
    cookies = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("session=")]
    if not cookies:
        return None
    return "Expires=" in cookies[-1]


def run_scenario(client: FlaskClient, steps: list[str]) -> list[Any]:
    seen: list[Any] = []
    for step in steps:
        response = client.post(step)
        assert response.status_code == 200, step
        seen.append((step, expires_sent(response)))
        shown = client.get("/show")
        assert shown.status_code == 200
        seen.append(shown.json)
    return seen


SCENARIOS = {
    "rotate keeps a permanent session permanent": ["/login", "/rotate"],
    "session['_permanent'] = True makes it permanent": ["/login-plain", "/mark"],
    "del session['_permanent'] makes it non-permanent": ["/login", "/unmark"],
    "rotate keeps a non-permanent session non-permanent": ["/login-plain", "/rotate"],
}


@pytest.mark.parametrize("steps", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_permanent_flag_behaves_as_with_flask_cookie_sessions(
    steps: list[str], session_dir: Path
) -> None:
    flask_seen = run_scenario(parity_app(SecureCookieSessionInterface()), steps)
    ours_seen = run_scenario(parity_app(SqliteSessionInterface(session_dir)), steps)
    assert ours_seen == flask_seen


def test_rotate_idiom_keeps_expires_on_the_new_cookie(session_dir: Path) -> None:
    client = parity_app(SqliteSessionInterface(session_dir))
    client.post("/login")
    rotated = client.post("/rotate")
    assert expires_sent(rotated) is True
    shown = client.get("/show").json
    assert shown is not None and shown["permanent"] is True
    assert shown["data"] == {"user": "ann", "_permanent": True}


def test_copy_returns_a_plain_shallow_dict(make_app: Callable[..., Flask]) -> None:
    app = make_app()

    @app.post("/fill")
    def fill() -> str:
        session["cart"] = [1, 2]
        session["user"] = "ann"
        return ""

    @app.get("/copy")
    def copy() -> str:
        copied = session.copy()
        assert type(copied) is dict
        assert copied == {"cart": [1, 2], "user": "ann"}
        assert copied["cart"] is session["cart"]  # shallow, like dict.copy()
        copied["user"] = "changed"  # the copy is not the session
        return session["user"]

    client = app.test_client()
    client.post("/fill")
    response = client.get("/copy")
    assert (response.status_code, response.text) == (200, "ann")


def test_non_string_keys_are_refused_on_write_and_absent_on_read(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    """Deliberately stricter than Flask, which would store ``session[1]`` under ``"1"``."""
    app = make_app()

    @app.post("/fill")
    def fill() -> str:
        session["1"] = "stored under the string"
        return ""

    @app.post("/write-int")
    def write_int() -> str:
        with pytest.raises(TypeError, match=r"keys must be str, not int \(1\).*session\['1'\]"):
            session[1] = "x"  # type: ignore[index]
        with pytest.raises(TypeError, match="keys must be str"):
            session.update({2: "y"})  # type: ignore[dict-item]
        return ""

    @app.get("/read-int")
    def read_int() -> dict[str, Any]:
        with pytest.raises(KeyError):
            session[1]  # type: ignore[index]
        return {
            "get": session.get(1),  # type: ignore[arg-type]
            "in": 1 in session,
            "keys": list(session),
        }

    client = app.test_client()
    client.post("/fill")
    assert client.post("/write-int").status_code == 200
    assert session_path(session_dir, sid_of(client)).exists()
    assert client.get("/read-int").json == {"get": None, "in": False, "keys": ["1"]}
