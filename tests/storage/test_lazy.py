"""Lazy loading: an untouched session costs nothing, a read-only new session leaves
nothing, and the first access reads the meta row and the key together.

The I/O spy (see ``core_helpers``) observes every Python-level filesystem call and every
SQLite file operation under the session directory; an untouched request must produce
none of them, not even a ``stat``. The first access of a request reads the meta row and
its key in one query: whatever that access is, the values, absences, expiry checks and
conflict versions are what separate reads give.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from core_helpers import cookie_value, session_files, spy_io
from flask import Flask, session

from sqlite_session import SessionConflictError


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


def test_first_save_of_a_non_empty_session_creates_the_file(app: Flask, session_dir: Path) -> None:
    client = routes(app).test_client()
    assert session_files(session_dir) == []
    response = client.get("/set")
    assert "Set-Cookie" in response.headers
    assert len(session_files(session_dir)) == 1
    assert client.get("/peek").text == "ann True 1 ['user']"


def _app_with_views(make_app: Callable[..., Flask], **options: object) -> Flask:
    app = make_app(**options)

    @app.get("/set")
    def set_() -> str:
        session.update({"a": 1, "b": [1, 2], "c": "three"})
        return "ok"

    @app.get("/get/<key>")
    def get(key: str) -> str:
        return repr(session.get(key))

    @app.get("/get-then-get/<first>/<second>")
    def get_then_get(first: str, second: str) -> str:
        return f"{session.get(first)!r} {session.get(second)!r}"

    @app.get("/missing-then-len")
    def missing_then_len() -> str:
        return f"{session.get('nope')!r} {len(session)}"

    @app.get("/append-b")
    def append_b() -> str:
        session["b"].append(3)
        return "ok"

    return app


def test_first_access_returns_the_stored_value(make_app: Callable[..., Flask]) -> None:
    client = _app_with_views(make_app).test_client()
    client.get("/set")
    assert client.get("/get/a").text == "1"
    assert client.get("/get/b").text == "[1, 2]"
    assert client.get("/get-then-get/c/a").text == "'three' 1"


def test_first_access_to_a_missing_key_leaves_the_others_readable(
    make_app: Callable[..., Flask],
) -> None:
    client = _app_with_views(make_app).test_client()
    client.get("/set")
    assert client.get("/get-then-get/nope/c").text == "None 'three'"
    assert client.get("/missing-then-len").text == "None 3"


def test_a_value_read_first_is_tracked_for_nested_changes(make_app: Callable[..., Flask]) -> None:
    client = _app_with_views(make_app).test_client()
    client.get("/set")
    client.get("/append-b")
    assert client.get("/get/b").text == "[1, 2, 3]"


def test_first_access_of_an_expired_session_reads_nothing(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    app = _app_with_views(make_app)
    app.config["PERMANENT_SESSION_LIFETIME"] = 1
    client = app.test_client()
    client.get("/set")
    time.sleep(1.1)
    assert client.get("/get/a").text == "None"
    assert len(session_files(session_dir)) == 1  # left for the sweeper, not served


def test_first_access_of_a_foreign_file_gives_a_fresh_session(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    client = _app_with_views(make_app).test_client()
    client.get("/set")
    (name,) = session_files(session_dir)
    (session_dir / name).write_bytes(b"not a database at all" * 100)
    assert client.get("/get/a").text == "None"


@pytest.mark.parametrize("first", ["a", "nope"])
def test_strict_mode_sees_a_conflict_on_a_key_read_first(
    make_app: Callable[..., Flask], first: str
) -> None:
    """The version recorded by the combined first read is the one checked at save."""
    app = _app_with_views(make_app, strict=True)

    @app.get("/bump-a")
    def bump_a() -> str:
        session[first] = "mine"
        return "ok"

    @app.get("/read-first-then-write")
    def read_first_then_write() -> str:
        value = session.get(first)
        other.get("/bump-a")  # another request writes the key meanwhile
        session[first] = f"{value!r} plus mine"
        return "ok"

    client = app.test_client()
    client.get("/set")
    other = app.test_client()
    other.set_cookie("session", client.get_cookie("session").value)
    with pytest.raises(SessionConflictError):
        client.get("/read-first-then-write")
    assert client.get(f"/get/{first}").text == "'mine'"


def test_first_access_does_not_create_a_file_for_a_new_session(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    client = _app_with_views(make_app).test_client()
    assert client.get("/get/a").text == "None"
    assert not session_dir.exists() or os.listdir(session_dir) == []
