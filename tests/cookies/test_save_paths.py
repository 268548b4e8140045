"""The end-of-request save looks the cookie up only when it needs it, and says Vary once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from core_helpers import add_counter, session_files
from flask import Flask, session


def _app(make_app: Callable[..., Flask]) -> Flask:
    return add_counter(make_app())


def test_the_cookie_attributes_are_needed_only_where_a_cookie_is_set_or_a_file_created(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    """As with Flask's cookie session, a bad SameSite only fails where a cookie is set.

    A request that reads, or writes under the id its client already holds, sets no
    cookie. A new session is refused before its file is created.
    """
    app = _app(make_app)
    client = app.test_client()
    client.get("/count")
    app.config["SESSION_COOKIE_SAMESITE"] = "invalid"
    response = client.get("/read")
    assert response.text == "1" and "Set-Cookie" not in response.headers
    response = client.get("/count")
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    assert client.get("/read").text == "2"
    with pytest.raises(ValueError, match=r"(?i)samesite"):
        app.test_client().get("/count")  # a new session: refused before its file exists
    assert len(session_files(session_dir)) == 1
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    assert client.get("/read").text == "2"


def test_a_regenerate_that_cannot_set_its_cookie_creates_no_file(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    """The new id's file is created inside the write: the cookie is checked before it."""
    app = _app(make_app)

    @app.get("/login")
    def login() -> str:
        session.regenerate()  # type: ignore[attr-defined]
        session["n"] = 10
        return "ok"

    client = app.test_client()
    client.get("/count")
    app.config["SESSION_COOKIE_SAMESITE"] = "invalid"
    with pytest.raises(ValueError, match=r"(?i)samesite"):
        client.get("/login")
    assert len(session_files(session_dir)) == 1
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    assert client.get("/read").text == "1"  # the old session, untouched


@pytest.mark.parametrize("path", ["/write-permanent", "/clear", "/delete-last"])
def test_a_write_that_would_end_with_a_cookie_is_refused_before_it_is_stored(
    make_app: Callable[..., Flask], session_dir: Path, path: str
) -> None:
    """A permanent session's save sets a new Expires; a logout or the last key's deletion
    deletes the cookie: a bad SameSite must stop them before the write, not after."""
    app = _app(make_app)

    @app.get("/write-permanent")
    def write_permanent() -> str:
        session.permanent = True
        session["n"] = session.get("n", 0) + 1
        return "ok"

    @app.get("/delete-last")
    def delete_last() -> str:
        del session["n"]
        return "ok"

    client = app.test_client()
    client.get("/count")
    app.config["SESSION_COOKIE_SAMESITE"] = "invalid"
    with pytest.raises(ValueError, match=r"(?i)samesite"):
        client.get(path)
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    assert client.get("/read").text == "1"  # unchanged: nothing was written
    assert len(session_files(session_dir)) == 1


def test_a_write_that_may_re_sign_the_cookie_is_refused_before_it_is_stored(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    """During a key rotation a cookie signed with the old key is re-signed at save."""
    app = _app(make_app)
    client = app.test_client()
    client.get("/count")
    app.config.update(SECRET_KEY="rotated", SECRET_KEY_FALLBACKS=[app.config["SECRET_KEY"]])
    app.config["SESSION_COOKIE_SAMESITE"] = "invalid"
    with pytest.raises(ValueError, match=r"(?i)samesite"):
        client.get("/count")
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    assert client.get("/read").text == "1"
    assert len(session_files(session_dir)) == 1


def test_regenerate_then_atomic_hands_the_client_the_new_id(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    """An atomic() block after regenerate() commits its changes; the move to the new id
    is the end-of-request save's, which sends the new cookie."""
    app = _app(make_app)

    @app.get("/login")
    def login() -> str:
        session.regenerate()  # type: ignore[attr-defined]
        with session.atomic():  # type: ignore[attr-defined]
            session["user"] = "alice"
        return "ok"

    @app.get("/user")
    def user() -> str:
        return repr(session.get("user"))

    client = app.test_client()
    client.get("/count")
    old_cookie = client.get_cookie("session")
    assert old_cookie is not None
    response = client.get("/login")
    assert "Set-Cookie" in response.headers
    assert client.get("/user").text == "'alice'" and client.get("/read").text == "1"
    stale = app.test_client()
    stale.set_cookie("session", old_cookie.value)
    assert stale.get("/user").text == "None"  # the old id names only a tombstone now


def test_a_cookie_deletion_still_carries_the_configured_attributes(
    make_app: Callable[..., Flask],
) -> None:
    app = _app(make_app)
    app.config.update(SESSION_COOKIE_DOMAIN="example.test", SESSION_COOKIE_SAMESITE="Strict")
    client = app.test_client()
    client.get("/count", base_url="http://example.test")
    response = client.get("/clear", base_url="http://example.test")
    cookie = response.headers["Set-Cookie"]
    assert "Max-Age=0" in cookie and "Domain=example.test" in cookie
    assert "SameSite=Strict" in cookie


@pytest.mark.parametrize("path", ["/count", "/read", "/clear"])
def test_vary_cookie_is_sent_once(make_app: Callable[..., Flask], path: str) -> None:
    client = _app(make_app).test_client()
    client.get("/count")
    response = client.get(path)
    assert response.headers.getlist("Vary") == ["Cookie"]


def test_vary_cookie_when_only_modified_is_set(make_app: Callable[..., Flask]) -> None:
    """A cookie set without any read still varies on Cookie (nothing marked it accessed).

    The cookie is set because it was signed with a fallback key: it is re-signed.
    """
    app = _app(make_app)

    @app.get("/touch")
    def touch() -> str:
        session.modified = True
        return "ok"

    client = app.test_client()
    client.get("/count")
    unchanged = client.get("/touch")  # the client already holds this very cookie
    assert "Set-Cookie" not in unchanged.headers
    app.config.update(SECRET_KEY="rotated", SECRET_KEY_FALLBACKS=[app.config["SECRET_KEY"]])
    response = client.get("/touch")
    assert "Set-Cookie" in response.headers
    assert response.headers.getlist("Vary") == ["Cookie"]
