"""Bad stored data: whatever sits where a session file should be, the request gets a
fresh session, a warning is logged, nothing answers 500, and the object found there
is neither modified nor followed.

Every case is reached with a validly signed cookie, so the store really opens the path.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest
from flask import Flask, jsonify, session

from sqlite_session.ids import IdSigner, new_session_id
from sqlite_session.store import Changes, SessionStore
from sqlite_session.store.format import FORMAT_VERSION

SECRET = "the victim's secret"


def real_session(directory: Path, sid: str) -> Path:
    """A genuine session file holding ``secret`` plus a few pages of other keys."""
    store = SessionStore(str(directory))
    upserts = {"secret": b'"' + SECRET.encode() + b'"'}
    upserts.update({f"pad{i}": b'"' + b"x" * 900 + b'"' for i in range(4)})
    store.create(sid, Changes(upserts=upserts, expires_at=time.time() + 3600))
    return directory / f"{sid}.session"


def foreign_database(path: Path) -> None:
    conn = apsw.Connection(str(path))
    conn.execute("CREATE TABLE users(name TEXT, password TEXT); INSERT INTO users VALUES('a','b')")
    conn.close()


def foreign_wal_database(path: Path) -> None:
    """A foreign database in WAL mode: opening it would create ``-wal``/``-shm`` files."""
    foreign_database(path)
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


def future_format(path: Path) -> None:
    """A session file of ours, as a later version of the store would write it."""
    real_session(path.parent, path.name.removesuffix(".session"))
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA user_version={FORMAT_VERSION + 1}")
    conn.close()


def truncated(size: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        real_session(path.parent, path.name.removesuffix(".session"))
        os.truncate(path, size)

    return make


def symlink_to_another_session(path: Path) -> None:
    """A symlink to a live session of someone else: following it would leak their data."""
    elsewhere = path.parent.parent / "elsewhere"
    elsewhere.mkdir()
    target = real_session(elsewhere, new_session_id())
    path.symlink_to(target)


CASES: dict[str, Callable[[Path], Any]] = {
    "garbage": lambda p: p.write_bytes(os.urandom(3000)),
    "sqlite-magic-then-garbage": lambda p: p.write_bytes(b"SQLite format 3\0" + os.urandom(3000)),
    "zero-length": lambda p: p.write_bytes(b""),
    "truncated-mid-page": truncated(1500),
    "truncated-at-page": truncated(2048),
    "directory": lambda p: (p.mkdir(), (p / "inside").write_bytes(b"keep")),
    "symlink": symlink_to_another_session,
    "dangling-symlink": lambda p: p.symlink_to(p.parent.parent / "nowhere"),
    "foreign-schema": foreign_database,
    "foreign-wal-schema": foreign_wal_database,
    "future-format": future_format,
}


def fingerprint(path: Path) -> list[tuple[str, Any]]:
    """Everything about ``path`` (and what it contains or points at) a store could change."""
    result: list[tuple[str, Any]] = []
    targets = [path]
    if path.is_symlink():
        result.append(("link", os.readlink(path)))
        targets.append(path.resolve())
    if path.is_dir():
        targets.extend(sorted(path.iterdir()))
    for target in targets:
        if target.exists():
            st = os.lstat(target)
            content = target.read_bytes() if target.is_file() else None
            result.append((str(target), (st.st_ino, st.st_mode, st.st_mtime_ns, content)))
        else:
            result.append((str(target), None))
    return result


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_file_gives_a_fresh_session(
    case: str,
    make_app: Callable[..., Flask],
    session_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app()

    @app.post("/visit")
    def visit() -> Any:
        seen = {key: session.get(key) for key in ("secret", "visits")}
        session["visits"] = 1
        return jsonify(seen)

    sid = new_session_id()
    bad = session_dir / f"{sid}.session"
    CASES[case](bad)
    before = fingerprint(bad)
    neighbours = sorted(os.listdir(session_dir.parent))
    cookie = IdSigner([app.secret_key]).sign(sid)  # type: ignore[list-item]

    for _ in range(2):  # and again: a bad file must not become a crash loop
        client = app.test_client()
        client.set_cookie("session", cookie)
        with caplog.at_level(logging.WARNING, logger="sqlite_session"):
            response = client.post("/visit")
        assert response.status_code == 200
        assert response.json == {"secret": None, "visits": None}
        new_cookie = client.get_cookie("session")
        assert new_cookie is not None and not new_cookie.value.startswith(sid)
        assert any(r.levelno >= logging.WARNING for r in caplog.records), "no warning logged"
        caplog.clear()

    assert fingerprint(bad) == before
    assert sorted(os.listdir(session_dir.parent)) == neighbours
    leftovers = [name for name in os.listdir(session_dir) if name.startswith(sid)]
    assert leftovers == [bad.name]  # no journal, -wal or -shm file left next to it
