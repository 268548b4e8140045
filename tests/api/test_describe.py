"""``SqliteSessionInterface.describe(session)``: the session's file and its rows' sizes."""

from __future__ import annotations

import os
from pathlib import Path

from core_helpers import session_files, stored_sizes
from flask import Flask

from sqlite_session import SessionFileInfo, SqliteSessionInterface, session


def described_app(session_dir: Path) -> tuple[Flask, list[SessionFileInfo | None]]:
    """An app whose views record what ``describe`` says, after their own changes."""
    app = Flask(__name__)
    app.secret_key = "describe test"
    interface = SqliteSessionInterface(session_dir)
    app.session_interface = interface
    seen: list[SessionFileInfo | None] = []

    @app.post("/fill")
    def fill() -> str:
        session["user"] = "ada"
        session["cart"] = ["apple", "pear"]
        seen.append(interface.describe(session))
        return "ok"

    @app.get("/")
    def look() -> str:
        seen.append(interface.describe(session))
        return "ok"

    @app.post("/note")
    def note() -> str:
        session["note"] = "x" * 300
        seen.append(interface.describe(session))
        return "ok"

    @app.post("/login")
    def login() -> str:
        session.regenerate()
        seen.append(interface.describe(session))
        return "ok"

    return app, seen


def describe_after(session_dir: Path, *requests: str) -> list[SessionFileInfo | None]:
    """Send ``requests`` ("POST /fill", ...) from one client; what each view described."""
    app, seen = described_app(session_dir)
    client = app.test_client()
    for request in requests:
        method, path = request.split()
        client.open(path, method=method)
    return seen


def test_a_new_session_has_no_file(session_dir: Path) -> None:
    # The first save creates the file, after the view ran.
    assert describe_after(session_dir, "GET /", "POST /fill") == [None, None]


def test_reports_the_file_and_the_rows_it_holds(session_dir: Path) -> None:
    info = describe_after(session_dir, "POST /fill", "GET /")[-1]

    assert info is not None
    (name,) = session_files(session_dir)
    assert info.path == str(session_dir / name)
    assert info.size == os.stat(info.path).st_size > 0
    wal = Path(info.path + "-wal")
    assert info.wal_size == (wal.stat().st_size if wal.exists() else 0)
    assert sorted(info.rows) == stored_sizes(info.path)
    assert [key for key, _ in sorted(info.rows)] == ["cart", "user"]


def test_includes_the_requests_pending_changes(session_dir: Path) -> None:
    info = describe_after(session_dir, "POST /fill", "POST /note")[-1]

    assert info is not None
    assert dict(info.rows)["note"] > 300  # described before the save, as the view sees it
    assert sorted(info.rows) == stored_sizes(info.path)  # and then saved exactly so


def test_a_regenerated_session_has_no_file_until_its_save(session_dir: Path) -> None:
    seen = describe_after(session_dir, "POST /fill", "GET /", "POST /login", "GET /")

    before, during, after = seen[1:]
    assert during is None
    assert before is not None and after is not None
    assert after.path != before.path and sorted(after.rows) == sorted(before.rows)
