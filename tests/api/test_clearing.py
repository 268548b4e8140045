"""A session emptied by any route has its file removed and its cookie deleted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from core_helpers import session_files, sid_of, stored_rows
from flask import Flask, session
from flask.sessions import SessionMixin

EMPTYING: dict[str, Callable[[SessionMixin], object]] = {
    "clear": lambda s: s.clear(),
    "del each key": lambda s: [s.__delitem__(k) for k in list(s)],
    "pop each key": lambda s: [s.pop(k) for k in list(s)],
    "popitem until empty": lambda s: [s.popitem() for _ in range(len(s))],
}


@pytest.mark.parametrize("how", list(EMPTYING))
def test_an_emptied_session_loses_its_file_and_cookie(
    app: Flask, session_dir: Path, how: str
) -> None:
    @app.get("/fill")
    def fill() -> str:
        session.update(a=1, b=[2], c={"d": 3})
        return ""

    @app.get("/empty")
    def empty() -> str:
        EMPTYING[how](session)
        return ""

    @app.get("/read")
    def read() -> str:
        return repr(dict(session))

    client = app.test_client()
    client.get("/fill")
    assert len(session_files(session_dir)) == 1
    response = client.get("/empty")
    assert session_files(session_dir) == []
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("session=;") and "Max-Age=0" in cookie
    assert client.get_cookie("session") is None
    assert client.get("/read").text == "{}"
    assert session_files(session_dir) == []  # nothing recreated by reading


def test_clear_then_set_keeps_only_the_new_keys(app: Flask, session_dir: Path) -> None:
    @app.get("/fill")
    def fill() -> str:
        session.update(a=1, b=2)
        return ""

    @app.get("/replace")
    def replace() -> str:
        session.clear()
        session["c"] = 3
        return ""

    client = app.test_client()
    client.get("/fill")
    client.get("/replace")
    assert stored_rows(session_dir, sid_of(client)) == {"c": b"3"}


def test_clearing_a_new_session_creates_nothing(app: Flask, session_dir: Path) -> None:
    @app.get("/clear")
    def clear() -> str:
        session["x"] = 1
        session.clear()
        return ""

    response = app.test_client().get("/clear")
    assert session_files(session_dir) == []
    assert "Set-Cookie" not in response.headers  # the client never had a cookie
