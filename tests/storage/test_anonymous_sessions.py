"""The capacity policy: anonymous sessions live shorter, and below the free-space reserve
a new one is not stored, while established sessions, logins and logouts always are.

A session is anonymous until it is established: by ``regenerate()`` (a login) or by a
user recorded in it. The reserve is met here with a ``reserve_fraction`` just below 1 (a
filesystem always has some space in use); the flood test meets it on a real tmpfs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest
from core_helpers import session_files, session_path, sid_of, stored_meta
from flask import Flask, session
from flask.testing import FlaskClient

from sqlite_session.ids import new_session_id
from sqlite_session.store import Changes, SessionStore

APP_LIFETIME = 31 * 86400  # Flask's PERMANENT_SESSION_LIFETIME default
ALWAYS_BELOW = 0.999999  # a reserve no filesystem with anything on it meets


def client_of(app: Flask) -> FlaskClient:
    @app.post("/visit")
    def visit() -> str:
        session["csrf"] = "token"
        return "ok"

    @app.get("/read")
    def read() -> str:
        return str(session.get("csrf"))

    @app.post("/login")
    def login() -> str:
        session.regenerate()
        session["_user_id"] = "alice"
        return "in"

    @app.post("/cart")
    def cart() -> str:
        session["cart"] = [*session.get("cart", []), "item"]
        return str(len(session["cart"]))

    @app.post("/logout")
    def logout() -> str:
        session.clear()
        session["flash"] = "bye"
        return "out"

    @app.post("/remember")
    def remember() -> str:
        session["_user_id"] = "bob"  # a user recorded without regenerate()
        return "ok"

    return app.test_client()


def expires_in(session_dir: Path, client: FlaskClient) -> float:
    return float(stored_meta(session_dir, sid_of(client))["expires_at"]) - time.time()


def test_an_anonymous_session_lives_the_anonymous_lifetime(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    client = client_of(make_app())
    assert client.post("/visit").status_code == 200
    meta = stored_meta(session_dir, sid_of(client))
    assert meta["anonymous"] == 1
    assert 3590 < expires_in(session_dir, client) <= 3600
    client.post("/visit")  # later writes keep it short
    assert expires_in(session_dir, client) <= 3600


def test_a_login_establishes_the_session_for_the_app_lifetime(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    client = client_of(make_app())
    client.post("/visit")
    client.post("/login")
    assert stored_meta(session_dir, sid_of(client))["anonymous"] is None
    assert expires_in(session_dir, client) > APP_LIFETIME - 60
    client.post("/cart")  # and stays established
    assert expires_in(session_dir, client) > APP_LIFETIME - 60


def test_a_recorded_user_establishes_the_session(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    client = client_of(make_app())
    client.post("/visit")
    client.post("/remember")
    assert stored_meta(session_dir, sid_of(client))["anonymous"] is None
    client.post("/visit")
    assert expires_in(session_dir, client) > APP_LIFETIME - 60


def test_what_a_logout_writes_is_anonymous_again(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    client = client_of(make_app())
    client.post("/login")
    client.post("/logout")
    assert stored_meta(session_dir, sid_of(client))["anonymous"] == 1
    assert expires_in(session_dir, client) <= 3600


def test_a_read_only_refresh_keeps_the_anonymous_lifetime(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    client = client_of(make_app(anonymous_lifetime=100))
    client.post("/visit")
    sid = sid_of(client)
    conn = apsw.Connection(str(session_path(session_dir, sid)))
    conn.execute("UPDATE meta SET expires_at = ?", (time.time() + 50,))  # refresh due
    conn.close()
    assert client.get("/read").text == "token"
    assert 90 < expires_in(session_dir, client) <= 100


def test_no_anonymous_lifetime_means_the_app_lifetime(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    client = client_of(make_app(anonymous_lifetime=None))
    client.post("/visit")
    assert expires_in(session_dir, client) > APP_LIFETIME - 60


def test_below_the_reserve_a_new_anonymous_session_is_not_stored(
    make_app: Callable[..., Flask], session_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(reserve_fraction=ALWAYS_BELOW)
    seen_new = []

    @app.post("/new")
    def new() -> str:
        session["csrf"] = "token"
        seen_new.append(session.new)
        return "ok"

    client = client_of(app)
    with caplog.at_level(logging.WARNING, logger="sqlite_session"):
        for _ in range(3):
            response = client.post("/new")
            assert response.status_code == 200
            assert "Set-Cookie" not in response.headers
    assert seen_new == [True, True, True]
    assert session_files(session_dir) == []
    warnings = [r for r in caplog.records if "below its reserve" in r.getMessage()]
    assert len(warnings) == 1  # at most one per minute, whatever the number refused
    assert app.session_interface.store.reserve.refused == 3  # type: ignore[attr-defined]


def test_below_the_reserve_logins_established_sessions_and_logouts_have_room(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    app = make_app(reserve_fraction=ALWAYS_BELOW)
    client = client_of(app)
    assert client.post("/login").status_code == 200  # a cookieless login
    assert stored_meta(session_dir, sid_of(client))["anonymous"] is None
    assert client.post("/cart").text == "1"
    assert client.post("/cart").text == "2"
    assert client.post("/login").status_code == 200  # a regenerate's new file
    assert client.post("/cart").text == "3"
    response = client.post("/logout")  # the logout's flash is a move: it is stored
    assert response.status_code == 200
    assert stored_meta(session_dir, sid_of(client))["anonymous"] == 1
    assert client.post("/login").status_code == 200
    assert client.post("/cart").text == "1"


def test_an_anonymous_session_already_stored_keeps_working_below_the_reserve(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    client = client_of(make_app())
    client.post("/visit")
    sid = sid_of(client)
    low = make_app(reserve_fraction=ALWAYS_BELOW)
    low_client = client_of(low)
    low_client.set_cookie("session", client.get_cookie("session").value)  # type: ignore[union-attr]
    assert low_client.post("/cart").text == "1"
    assert sid_of(low_client) == sid


def test_a_session_of_an_older_format_counts_as_established(tmp_path: Path) -> None:
    """A format-2 file has no ``anonymous`` column: it may be a logged-in user's."""
    store = SessionStore(str(tmp_path))
    sid = new_session_id()
    store.create(sid, Changes(upserts={"k": b"1"}, expires_at=time.time() + 60, anonymous=True))
    conn = apsw.Connection(store.path_for(sid))
    conn.execute("ALTER TABLE meta DROP COLUMN anonymous; PRAGMA user_version=2")
    conn.close()
    opened = store.open(sid)
    assert opened.meta is not None and opened.meta.anonymous is False
    assert store.open(sid, "k").row is not None
