"""A regenerate() whose new file cannot be created changes nothing and says so.

The old session must stay exactly as it was (same id, same data, the client's cookie
untouched), the request must get a SessionError rather than a silent fresh session,
and once a regenerate succeeds the old id serves nothing. The failure is real: the
process is left without a free file descriptor while the login request runs (the
session's own connection is already open, so only the new file needs one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from core_helpers import cookie_value, descriptors_exhausted, sid_of, stored_meta, stored_rows
from flask import Flask, session

from sqlite_session import SessionError


def routes(app: Flask) -> None:
    @app.post("/browse")
    def browse() -> str:
        session["user"] = "anonymous"
        session["cart"] = [1, 2]
        return ""

    @app.post("/login")
    def login() -> str:
        session["user"] = "ann"
        session.regenerate()
        return ""

    @app.get("/show")
    def show() -> dict[str, Any]:
        return dict(session)


def without_side_files(names: list[str]) -> list[str]:
    return sorted(name for name in names if not name.endswith(("-wal", "-shm")))


def test_a_failed_regenerate_leaves_the_old_session_as_it_was(
    app: Flask, session_dir: Path
) -> None:
    routes(app)
    client = app.test_client()
    client.post("/browse")
    assert client.get("/show").json == {"user": "anonymous", "cart": [1, 2]}
    old_cookie, old_sid = cookie_value(client), sid_of(client)
    rows, meta = stored_rows(session_dir, old_sid), stored_meta(session_dir, old_sid)
    files = without_side_files(os.listdir(session_dir))

    with descriptors_exhausted(), pytest.raises(SessionError) as caught:
        client.post("/login")
    assert isinstance(caught.value.__cause__, OSError)

    assert cookie_value(client) == old_cookie  # no Set-Cookie: the client keeps its id
    # No new file, no temporary left (the -wal and -shm go when the last connection
    # to the session closes, which the failed request may have been).
    assert without_side_files(os.listdir(session_dir)) == files
    assert stored_rows(session_dir, old_sid) == rows
    assert stored_meta(session_dir, old_sid) == meta
    assert client.get("/show").json == {"user": "anonymous", "cart": [1, 2]}

    # The same login once descriptors are back: the data moves, the old id serves nothing.
    assert client.post("/login").status_code == 200
    assert sid_of(client) != old_sid
    assert client.get("/show").json == {"user": "ann", "cart": [1, 2]}
    replay = app.test_client()
    replay.set_cookie("session", str(old_cookie))
    assert replay.get("/show").json == {}
