"""The ``-wal`` of an open session stays small, even after a large write.

A checkpoint rewinds the WAL without shrinking it, so after one save of a large value
the ``-wal`` kept that size (about 1 MB for a 1 MiB value) for as long as the session
stayed open in the connection pool. A save that grows it past ``WAL_SIZE_LIMIT`` now
truncates it.
"""

from __future__ import annotations

import os
from pathlib import Path

from core_helpers import session_path, sid_of
from flask import Flask, session

from sqlite_session.store import WAL_SIZE_LIMIT


def wal_size(path: Path) -> int:
    try:
        return os.path.getsize(str(path) + "-wal")
    except FileNotFoundError:
        return 0


def test_the_wal_stays_small_after_a_large_write(app: Flask, session_dir: Path) -> None:
    @app.post("/small/<int:n>")
    def small(n: int) -> str:
        session[f"k{n}"] = n
        return ""

    @app.post("/large")
    def large() -> str:
        session["blob"] = "x" * 1_000_000
        return ""

    @app.get("/length")
    def length() -> str:
        return str(len(session["blob"]))

    client = app.test_client()
    client.post("/small/0")
    path = session_path(session_dir, sid_of(client))
    client.post("/small/1")  # the file is open in the pool, in WAL mode
    assert os.path.exists(str(path) + "-shm")

    assert client.post("/large").status_code == 200
    assert wal_size(path) <= WAL_SIZE_LIMIT
    assert client.get("/length").text == "1000000"
    for n in range(2, 40):  # small writes after it, checkpointed as usual
        client.post(f"/small/{n}")
        assert wal_size(path) <= WAL_SIZE_LIMIT
    assert client.get("/length").text == "1000000"


def test_the_wal_stays_small_after_a_write_of_many_scattered_small_keys(
    app: Flask, session_dir: Path
) -> None:
    """Few bytes, many pages: each updated key sits on a page of its own."""

    @app.post("/fill")
    def fill() -> str:
        for n in range(3000):
            session[f"k{n:04}"] = "v" * 200
        return ""

    @app.post("/scatter")
    def scatter() -> str:
        for n in range(0, 3000, 30):
            session[f"k{n:04}"] = n
        return ""

    @app.get("/read")
    def read() -> str:
        return f"{session['k0030']} {session['k0031']}"

    client = app.test_client()
    client.post("/fill")
    path = session_path(session_dir, sid_of(client))
    assert client.post("/scatter").status_code == 200
    assert os.path.exists(str(path) + "-shm")  # still open in the pool
    assert wal_size(path) <= WAL_SIZE_LIMIT
    assert client.get("/read").text == "30 " + "v" * 200
