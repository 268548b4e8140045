"""The first access of a request reads the meta row and the key together (one query).

These tests pin the behaviour of that combined read: whatever the first access is, the
values, absences, expiry checks and conflict versions are what separate reads give.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from core_helpers import session_files
from flask import Flask, session

from sqlite_session import SessionConflictError


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
