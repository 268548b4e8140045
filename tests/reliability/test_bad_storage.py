"""Whatever sits at a session's path, the request gets a fresh session.

Each case puts something that is not a usable session file in the place of a validly
signed id's file: the request must answer 200 with an empty session, log a warning on
the ``sqlite_session`` logger, hand out a new id when it writes, and keep doing so on
every later request (no crash loop).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest
from core_helpers import scramble_data_pages, session_path, sid_of
from flask import Flask, session
from flask.testing import FlaskClient

from sqlite_session.ids import IdSigner


def truncate_to(path: Path, size: int) -> None:
    with path.open("r+b") as handle:
        handle.truncate(size)


def foreign_database(path: Path) -> None:
    path.unlink()
    conn = apsw.Connection(str(path))
    conn.execute("CREATE TABLE users(name TEXT); INSERT INTO users VALUES ('root')")
    conn.close()


def directory_in_place(path: Path) -> None:
    path.unlink()
    path.mkdir()


def meta_rows(count: int) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        conn = apsw.Connection(str(path))
        conn.execute("DELETE FROM meta")
        for _ in range(count):
            conn.execute(
                "INSERT INTO meta(expires_at, state, permanent, seq, nkeys) "
                "VALUES (9e99, 0, 0, 0, 1)"
            )
        conn.close()

    return damage


DAMAGE: dict[str, Callable[[Path], object]] = {
    "zero-length": lambda p: truncate_to(p, 0),
    "truncated to one page": lambda p: truncate_to(p, 1024),
    "truncated in the middle": lambda p: truncate_to(p, p.stat().st_size // 2),
    "random bytes": lambda p: p.write_bytes(os.urandom(8192)),
    "sqlite header then garbage": lambda p: p.write_bytes(b"SQLite format 3\0" + b"\xee" * 4000),
    "foreign sqlite database": foreign_database,
    "data pages scrambled": scramble_data_pages,
    "no meta row": meta_rows(0),
    "two meta rows": meta_rows(2),
    "a directory": directory_in_place,
}


def routes(app: Flask) -> FlaskClient:
    @app.get("/fill")
    def fill() -> str:
        for i in range(300):  # a few hundred pages, so truncation cuts through data
            session[f"k{i}"] = "x" * 500
        return ""

    @app.get("/read")
    def read() -> str:
        return f"{session.get('k7', 'fresh')} {session.get('mine')}"

    @app.get("/write")
    def write() -> str:
        session["mine"] = session.get("k250", "new")
        return ""

    @app.get("/atomic")
    def atomic() -> str:
        with session.atomic():
            session["counter"] = session.get("counter", 0) + 1
        return str(session["counter"])

    @app.get("/blind-write")
    def blind_write() -> str:
        session["k100"] = "overwritten without reading first"
        session["blind"] = "yes"
        return ""

    return app.test_client()


def stored_then_edited(app: Flask, session_dir: Path, statement: str) -> FlaskClient:
    """A client whose stored session was then edited by hand with ``statement``."""
    client = routes(app)
    client.get("/fill")
    conn = apsw.Connection(str(session_path(session_dir, sid_of(client))))
    conn.execute(statement)
    conn.close()
    return client


@pytest.fixture(params=list(DAMAGE))
def damaged(
    request: pytest.FixtureRequest,
    app: Flask,
    session_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> tuple[FlaskClient, str]:
    """A stored session whose file was then damaged: a client and the session's id."""
    client = routes(app)
    client.get("/fill")
    sid = sid_of(client)
    DAMAGE[request.param](session_path(session_dir, sid))
    caplog.set_level(logging.WARNING, logger="sqlite_session")
    return client, sid


def test_bad_file_gives_a_fresh_session_and_a_warning(
    app: Flask, damaged: tuple[FlaskClient, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, sid = damaged
    fresh = app.test_client()
    fresh.set_cookie("session", IdSigner(["test secret"]).sign(sid))
    for _ in range(2):  # the same bad cookie again: still no error
        response = fresh.get("/read")
        assert response.status_code == 200
        assert response.text == "fresh None"
    assert any(r.name == "sqlite_session" and r.levelno == logging.WARNING for r in caplog.records)

    fresh.set_cookie("session", IdSigner(["test secret"]).sign(sid))
    written = fresh.get("/write")
    assert written.status_code == 200
    new_sid = sid_of(fresh)
    assert new_sid != sid
    assert fresh.get("/read").text == "fresh new"
    assert fresh.get("/read").status_code == 200


@pytest.mark.parametrize(
    ("route", "answer", "then", "then_answer"),
    [
        ("/blind-write", "", "/read", "fresh None"),  # a write without a read first
        ("/atomic", "1", "/atomic", "2"),  # atomic() meets the damage under the lock
    ],
)
def test_a_write_to_a_bad_file_starts_a_fresh_session(
    app: Flask,
    damaged: tuple[FlaskClient, str],
    caplog: pytest.LogCaptureFixture,
    route: str,
    answer: str,
    then: str,
    then_answer: str,
) -> None:
    _, sid = damaged
    for _ in range(2):  # the same bad cookie again: no crash loop
        other = app.test_client()
        other.set_cookie("session", IdSigner(["test secret"]).sign(sid))
        response = other.get(route)
        assert (response.status_code, response.text) == (200, answer)
        assert sid_of(other) != sid
        assert other.get(then).text == then_answer  # the fresh session is usable
    assert any(r.name == "sqlite_session" for r in caplog.records)


def test_bad_file_found_by_a_new_process(
    make_app: Callable[..., Flask], session_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file damaged while idle, met by an app with no pooled connection to it."""
    client = routes(make_app())
    client.get("/fill")
    sid = sid_of(client)
    truncate_to(session_path(session_dir, sid), 3000)
    other = routes(make_app())
    other.set_cookie("session", IdSigner(["test secret"]).sign(sid))
    caplog.set_level(logging.WARNING, logger="sqlite_session")
    assert other.get("/read").text == "fresh None"
    assert caplog.records


def test_a_key_whose_value_cannot_be_decoded_is_dropped_with_a_warning(
    app: Flask, session_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = stored_then_edited(app, session_dir, "UPDATE kv SET value = x'ff00' WHERE key = 'k7'")
    caplog.set_level(logging.WARNING, logger="sqlite_session")
    assert client.get("/read").text == "fresh None"
    assert any("k7" in r.getMessage() for r in caplog.records)


def test_a_value_stored_as_text_is_refused_at_the_first_read_as_at_any_later_one(
    app: Flask, session_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first key a request reads comes with the meta row; its type is checked all the
    same (a later read of it would find the file unreadable anyway)."""
    edit = "UPDATE kv SET value = CAST(value AS TEXT) WHERE key = 'k7'"
    client = stored_then_edited(app, session_dir, edit)
    caplog.set_level(logging.WARNING, logger="sqlite_session")
    assert client.get("/read").text == "fresh None"
    assert any("expected bytes, found str" in r.getMessage() for r in caplog.records)
    assert client.get_cookie("session") is None  # a fresh session, as a later read gives
