"""Changes are buffered and saved in one transaction, only what changed.

The store stamps every row it writes with the session's change counter (``meta.seq``),
so the raw file tells which keys a save wrote and how many transactions it took.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest
from core_helpers import session_files, session_path, sid_of, stored_meta, stored_rows
from flask import Flask, abort, request, session
from flask.testing import FlaskClient


def versions(session_dir: Path, sid: str) -> dict[str, int]:
    conn = apsw.Connection(str(session_path(session_dir, sid)), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return {key: version for key, version in conn.execute("SELECT key, version FROM kv")}
    finally:
        conn.close()


def file_digest(session_dir: Path, sid: str) -> str:
    return hashlib.sha256(session_path(session_dir, sid).read_bytes()).hexdigest()


def build(app: Flask, session_dir: Path) -> FlaskClient:
    @app.get("/seed")
    def seed() -> str:
        session.update(a=1, b=2, c=3)
        return ""

    @app.get("/change-b-drop-c")
    def change_b_drop_c() -> str:
        session["b"] = 20
        del session["c"]
        # nothing reaches the file before the view returns
        sid = request.cookies["session"].rpartition(".")[0]
        assert stored_rows(session_dir, sid).keys() == {"a", "b", "c"}
        return ""

    @app.get("/three")
    def three() -> str:
        session["x"] = 1
        session["y"] = 2
        session["a"] = 10
        return ""

    @app.get("/same-value")
    def same_value() -> str:
        return str(session["a"])

    @app.get("/fail")
    def fail() -> str:
        session["a"] = "half-done"
        abort(500)

    @app.get("/crash")
    def crash() -> str:
        session["a"] = "half-done"
        raise RuntimeError("view failed")

    @app.get("/new-fail")
    def new_fail() -> tuple[str, int]:
        session["fresh"] = 1
        return "no", 503

    @app.get("/not-found")
    def not_found() -> tuple[str, int]:
        session["a"] = 404
        return "gone", 404

    @app.get("/read")
    def read() -> str:
        return repr(dict(session))

    return app.test_client()


@pytest.fixture
def client(app: Flask, session_dir: Path) -> FlaskClient:
    app.testing = False  # let a failing view become a 500 response
    return build(app, session_dir)


@pytest.fixture
def strict_client(make_app: Callable[..., Flask], session_dir: Path) -> FlaskClient:
    """In strict mode every write moves the change counter and stamps its keys with it:
    the versions show which rows a write rewrote, and in how many commits."""
    app = make_app(strict=True)
    app.testing = False
    return build(app, session_dir)


def test_only_changed_keys_are_written_and_removed_keys_deleted(
    strict_client: FlaskClient, session_dir: Path
) -> None:
    client = strict_client
    client.get("/seed")
    sid = sid_of(client)
    before = versions(session_dir, sid)
    client.get("/change-b-drop-c")
    after = versions(session_dir, sid)
    assert after.keys() == {"a", "b"}
    assert after["a"] == before["a"]  # untouched key: row not rewritten
    assert after["b"] > before["b"]
    assert stored_rows(session_dir, sid)["b"] == b"20"


def test_a_request_is_saved_in_one_transaction(
    strict_client: FlaskClient, session_dir: Path
) -> None:
    client = strict_client
    client.get("/seed")
    sid = sid_of(client)
    seq = stored_meta(session_dir, sid)["seq"]
    client.get("/three")
    assert stored_meta(session_dir, sid)["seq"] == seq + 1  # one commit for three keys
    new = versions(session_dir, sid)
    assert new["x"] == new["y"] == new["a"] == seq + 1


def test_nothing_changed_means_no_write(client: FlaskClient, session_dir: Path) -> None:
    client.get("/seed")
    sid = sid_of(client)
    digest = file_digest(session_dir, sid)
    mtime = session_path(session_dir, sid).stat().st_mtime_ns
    for path in ("/read", "/same-value", "/read"):
        response = client.get(path)
        assert "Set-Cookie" not in response.headers
    assert file_digest(session_dir, sid) == digest
    assert session_path(session_dir, sid).stat().st_mtime_ns == mtime


@pytest.mark.parametrize("path", ["/fail", "/crash"])
def test_a_5xx_response_saves_nothing(client: FlaskClient, session_dir: Path, path: str) -> None:
    client.get("/seed")
    sid = sid_of(client)
    digest = file_digest(session_dir, sid)
    assert client.get(path).status_code == 500
    assert file_digest(session_dir, sid) == digest
    assert client.get("/read").text == "{'a': 1, 'b': 2, 'c': 3}"


def test_a_5xx_response_creates_no_session(client: FlaskClient, session_dir: Path) -> None:
    response = client.get("/new-fail")
    assert response.status_code == 503
    assert "Set-Cookie" not in response.headers
    assert session_files(session_dir) == []


def test_a_4xx_response_is_saved(client: FlaskClient, session_dir: Path) -> None:
    client.get("/seed")
    assert client.get("/not-found").status_code == 404
    assert stored_rows(session_dir, sid_of(client))["a"] == b"404"


def test_save_on_error_saves_a_5xx_response(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    app = make_app(save_on_error=True)
    app.testing = False
    client = build(app, session_dir)
    client.get("/seed")
    assert client.get("/fail").status_code == 500
    assert client.get("/read").text == "{'a': 'half-done', 'b': 2, 'c': 3}"
    assert client.get("/new-fail").status_code == 503  # same cookie: saved into it
    assert "fresh" in stored_rows(session_dir, sid_of(client))
