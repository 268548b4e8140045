"""Items 1 and 2: an untouched session costs nothing, a read-only new session leaves nothing.

The I/O spy (see ``core_helpers``) observes every Python-level filesystem call and every
SQLite file operation under the session directory; an untouched request must produce
none of them, not even a ``stat``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from core_helpers import cookie_value, session_files, spy_io
from flask import Flask, session


def routes(app: Flask) -> Flask:
    @app.get("/set")
    def set_() -> str:
        session["user"] = "ann"
        return "ok"

    @app.get("/untouched")
    def untouched() -> str:
        return "healthy"

    @app.get("/peek")
    def peek() -> str:
        return f"{session.get('user')} {'user' in session} {len(session)} {list(session)}"

    return app


def test_untouched_request_does_no_io_even_with_a_session_cookie(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    writer = routes(make_app()).test_client()
    writer.get("/set")
    cookie = cookie_value(writer)
    assert cookie

    app = routes(make_app())  # a fresh process-like interface: no pooled connections
    client = app.test_client()
    client.set_cookie("session", cookie)
    with spy_io(session_dir) as log:
        response = client.get("/untouched")
        static = client.get("/static/missing.css")  # Flask's static route, also untouched
    assert response.text == "healthy"
    assert static.status_code == 404
    assert log.events == []
    for r in (response, static):
        assert "Set-Cookie" not in r.headers
        assert "Cookie" not in r.vary

    with spy_io(session_dir) as control:  # the spy does see a request that reads
        assert client.get("/peek").text == "ann True 1 ['user']"
    assert {op for op, _ in control.events} >= {"os.lstat", "sqlite.open"}


@pytest.mark.parametrize(
    ("path", "text", "vary"),
    [
        ("/untouched", "healthy", set()),  # never touched: nothing at all
        ("/peek", "None False 0 []", {"cookie"}),  # read: the response varies, no more
    ],
)
def test_cookieless_request_that_does_not_write_creates_nothing(
    app: Flask, session_dir: Path, path: str, text: str, vary: set[str]
) -> None:
    client = routes(app).test_client()
    with spy_io(session_dir) as log:
        response = client.get(path)
    assert response.text == text
    assert log.events == []  # no cookie: nothing to look up
    assert "Set-Cookie" not in response.headers
    assert response.vary.as_set() == vary
    assert list(session_dir.iterdir()) == []


def test_first_save_of_a_non_empty_session_creates_the_file(
    app: Flask, session_dir: Path
) -> None:
    client = routes(app).test_client()
    assert session_files(session_dir) == []
    response = client.get("/set")
    assert "Set-Cookie" in response.headers
    assert len(session_files(session_dir)) == 1
    assert client.get("/peek").text == "ann True 1 ['user']"
