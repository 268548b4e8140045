"""Logout invalidates the token (OWASP ASVS 3.3.1), even when the view writes again.

``session.clear(); flash("bye")`` is the usual logout: whatever the request writes
after the clear goes under a new id, the old file is removed, and the pre-logout
cookie leads to an empty session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core_helpers import cookie_value, session_path, sid_of
from flask import Flask, flash, get_flashed_messages, session


def routes(app: Flask) -> None:
    @app.post("/login")
    def login() -> str:
        session["user"] = "ann"
        session["cart"] = [1, 2, 3]
        return ""

    @app.post("/logout")
    def logout() -> str:
        session.clear()
        flash("bye")
        return ""

    @app.post("/logout-atomic")
    def logout_atomic() -> str:
        session.clear()
        with session.atomic():
            session["note"] = "written in an atomic block after the clear"
        return ""

    @app.get("/show")
    def show() -> dict[str, Any]:
        keys = list(session)  # before get_flashed_messages() pops the flashes
        return {"user": session.get("user"), "flashes": get_flashed_messages(), "keys": keys}


def test_logout_then_flash_moves_the_flash_to_a_new_id(app: Flask, session_dir: Path) -> None:
    routes(app)
    client = app.test_client()
    client.post("/login")
    old_cookie, old_sid = cookie_value(client), sid_of(client)

    logout = client.post("/logout")
    assert logout.status_code == 200
    assert any(h.startswith("session=") for h in logout.headers.getlist("Set-Cookie"))
    new_sid = sid_of(client)
    assert new_sid != old_sid
    assert not session_path(session_dir, old_sid).exists()
    assert session_path(session_dir, new_sid).exists()

    assert client.get("/show").json == {"user": None, "flashes": ["bye"], "keys": ["_flashes"]}

    replay = app.test_client()
    replay.set_cookie("session", str(old_cookie))
    assert replay.get("/show").json == {"user": None, "flashes": [], "keys": []}
    assert not session_path(session_dir, old_sid).exists()


def test_a_write_in_atomic_after_clear_also_goes_under_a_new_id(
    app: Flask, session_dir: Path
) -> None:
    routes(app)
    client = app.test_client()
    client.post("/login")
    old_cookie, old_sid = cookie_value(client), sid_of(client)
    assert client.post("/logout-atomic").status_code == 200
    assert sid_of(client) != old_sid
    assert not session_path(session_dir, old_sid).exists()
    replay = app.test_client()
    replay.set_cookie("session", str(old_cookie))
    assert replay.get("/show").json == {"user": None, "flashes": [], "keys": []}
    assert client.get("/show").json["keys"] == ["note"]
