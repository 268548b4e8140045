"""The contract of ``flask.session``: a MutableMapping and SessionMixin with ``sid``,
``new``, ``modified``, ``accessed``, ``permanent`` and ``regenerate()``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from core_helpers import cookie_value, session_files, session_path, sid_of, stored_rows
from flask import Flask, session
from flask.globals import request_ctx
from flask.sessions import SessionMixin
from flask.testing import FlaskClient

from sqlite_session import PerKeySession


def current() -> PerKeySession:
    """This request's session object itself (``flask.session`` is a proxy typed as the mixin)."""
    obj = request_ctx.session
    assert isinstance(obj, PerKeySession)
    return obj


def routes(app: Flask, seen: dict[str, Any]) -> FlaskClient:
    @app.get("/inspect")
    def inspect() -> str:
        seen["mapping"] = isinstance(request_ctx.session, MutableMapping)
        seen["mixin"] = isinstance(request_ctx.session, SessionMixin)
        seen["sid"] = current().sid
        seen["new"] = session.new
        seen["modified"] = session.modified
        seen["permanent"] = session.permanent
        return ""

    @app.get("/write")
    def write() -> str:
        session["user"] = "ann"
        session.setdefault("cart", []).append("apple")
        return ""

    @app.get("/login")
    def login() -> str:
        old = current().sid
        current().regenerate()
        seen["old"], seen["new_sid"] = old, current().sid
        session["user"] = "admin"
        return ""

    @app.get("/read")
    def read() -> str:
        return f"{session.get('user')} {session.get('cart')}"

    @app.get("/attack")
    def attack() -> str:
        session["user"] = "attacker"
        return str(session.get("cart"))

    return app.test_client()


def test_attributes_of_a_new_and_a_stored_session(app: Flask) -> None:
    seen: dict[str, Any] = {}
    client = routes(app, seen)
    client.get("/inspect")
    assert seen == {
        "mapping": True,
        "mixin": True,
        "sid": None,
        "new": True,
        "modified": False,
        "permanent": False,
    }
    client.get("/write")
    client.get("/inspect")
    assert seen["sid"] == sid_of(client) and seen["new"] is False


def test_regenerate_gives_a_new_id_same_data_and_retires_the_old_one(
    app: Flask, session_dir: Path
) -> None:
    seen: dict[str, Any] = {}
    client = routes(app, seen)
    client.get("/write")
    old_cookie = cookie_value(client)
    old_sid = sid_of(client)
    response = client.get("/login")
    new_sid = sid_of(client)
    assert seen["old"] == old_sid and seen["new_sid"] == new_sid != old_sid
    assert "Set-Cookie" in response.headers
    assert client.get("/read").text == "admin ['apple']"
    assert stored_rows(session_dir, new_sid).keys() == {"user", "cart"}
    # the old id holds no data any more (a short-lived tombstone at most)
    old_path = session_path(session_dir, old_sid)
    assert not old_path.exists() or stored_rows(session_dir, old_sid) == {}

    # a request still carrying the old id (a fixation attempt) gets nothing and changes nothing
    stale = app.test_client()
    assert old_cookie
    stale.set_cookie("session", old_cookie)
    assert stale.get("/attack").text == "None"
    assert client.get("/read").text == "admin ['apple']"
    assert sorted(session_files(session_dir)) == sorted(
        {f"{new_sid}.session"} | ({old_path.name} if old_path.exists() else set())
    )


def test_regenerate_on_a_new_session_just_uses_the_new_id(app: Flask, session_dir: Path) -> None:
    seen: dict[str, Any] = {}
    client = routes(app, seen)
    client.get("/login")
    assert seen["old"] is None
    assert sid_of(client) == seen["new_sid"]
    assert session_files(session_dir) == [f"{seen['new_sid']}.session"]
