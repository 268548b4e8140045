"""``__Host-`` and ``__Secure-`` cookie names: a configuration browsers would reject fails
at start-up (OWASP ASVS 3.4.4), never as a cookie silently dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session

from sqlite_session import SessionConfigError, SessionError, SqliteSession, SqliteSessionInterface

GOOD_HOST = {"SESSION_COOKIE_NAME": "__Host-sid", "SESSION_COOKIE_SECURE": True}


def prefixed_app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", TESTING=True, SQLITE_SESSION_PATH=str(tmp_path / "s"))
    app.config.update(config)

    @app.get("/set")
    def set_() -> str:
        session["k"] = "v"
        return "ok"

    return app


@pytest.mark.parametrize(
    ("config", "wanted"),
    [
        ({"SESSION_COOKIE_NAME": "__Host-sid"}, "SESSION_COOKIE_SECURE = True"),
        ({**GOOD_HOST, "SESSION_COOKIE_PATH": "/app"}, "SESSION_COOKIE_PATH"),
        ({**GOOD_HOST, "APPLICATION_ROOT": "/app"}, "SESSION_COOKIE_PATH"),
        ({**GOOD_HOST, "SESSION_COOKIE_DOMAIN": "example.com"}, "SESSION_COOKIE_DOMAIN"),
        ({"SESSION_COOKIE_NAME": "__Secure-sid"}, "SESSION_COOKIE_SECURE = True"),
    ],
)
def test_extension_refuses_a_prefix_without_its_attributes(
    tmp_path: Path, config: dict[str, Any], wanted: str
) -> None:
    app = prefixed_app(tmp_path, **config)
    with pytest.raises(SessionConfigError, match=wanted) as caught:
        SqliteSession(app)
    assert isinstance(caught.value, SessionError) and isinstance(caught.value, ValueError)
    assert "browsers" in str(caught.value)


def test_interface_set_by_hand_refuses_at_the_first_request(tmp_path: Path) -> None:
    app = prefixed_app(tmp_path, SESSION_COOKIE_NAME="__Host-sid")
    app.session_interface = SqliteSessionInterface(tmp_path / "s")
    with pytest.raises(SessionConfigError, match="__Host-"):
        app.test_client().get("/set")
    assert not list((tmp_path / "s").glob("*.session"))


@pytest.mark.parametrize(
    "config",
    [
        GOOD_HOST,
        {"SESSION_COOKIE_NAME": "__Secure-sid", "SESSION_COOKIE_SECURE": True},
        {"SESSION_COOKIE_NAME": "__host-sid"},
    ],  # browsers match the prefix case-sensitively
)
def test_a_prefix_with_its_attributes_sets_the_cookie(
    tmp_path: Path, config: dict[str, Any]
) -> None:
    app = prefixed_app(tmp_path, **config)
    SqliteSession(app)
    response = app.test_client().get("/set", base_url="https://localhost")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(config["SESSION_COOKIE_NAME"] + "=")
    if config.get("SESSION_COOKIE_SECURE"):
        assert "Secure" in cookie and "Path=/" in cookie and "Domain" not in cookie
