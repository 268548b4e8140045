"""Hostile directories: an unsafe session directory is refused at construction, files are
private whatever the umask, and a symlink planted next to a session is never followed.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask, session

from sqlite_session import SessionDirectoryError, SqliteSessionInterface
from sqlite_session.janitor import sweep
from sqlite_session.store import Changes, SessionStore

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.parametrize("bits", [0o777, 0o1777, 0o703])
def test_world_writable_directory_is_refused(tmp_path: Path, bits: int) -> None:
    directory = tmp_path / "sessions"
    directory.mkdir()
    directory.chmod(bits)
    with pytest.raises(SessionDirectoryError, match="allow_unsafe_directory"):
        SqliteSessionInterface(directory)
    SqliteSessionInterface(directory, allow_unsafe_directory=True)


def test_directory_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a directory to another user")
    directory = tmp_path / "sessions"
    directory.mkdir(mode=0o700)
    os.chown(directory, NOBODY, NOBODY)
    with pytest.raises(SessionDirectoryError, match=f"uid {NOBODY}"):
        SqliteSessionInterface(directory)
    SqliteSessionInterface(directory, allow_unsafe_directory=True)


def test_directory_0700_files_0600_wal_files_0600(
    open_umask: None, make_app: Callable[..., Flask], session_dir: Path
) -> None:
    app = make_app()

    @app.post("/set")
    def set_() -> str:
        session["k"] = "v"
        return "ok"

    app.test_client().post("/set")
    assert mode(session_dir) == 0o700
    (name,) = os.listdir(session_dir)
    assert mode(session_dir / name) == 0o600
    # The -wal and -shm files exist while a connection is open: look at them then.
    store = SessionStore(str(session_dir))
    sid = name.removesuffix(".session")
    with store.transaction(sid) as tx:
        tx.apply(Changes(upserts={"k": b"x" * 3000}, expires_at=time.time() + 60))
    assert mode(session_dir / f"{name}-wal") == 0o600
    assert mode(session_dir / f"{name}-shm") == 0o600


@pytest.mark.parametrize("sidecar", ["-wal", "-shm"])
@pytest.mark.parametrize("target_exists", [True, False])
def test_planted_wal_symlink_is_not_followed(
    make_app: Callable[..., Flask],
    session_dir: Path,
    tmp_path: Path,
    target_exists: bool,
    sidecar: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A symlink at ``<id>.session-wal`` or ``-shm`` would let SQLite write (or replay a
    WAL) through it: an existing target must stay unchanged, a missing one never created,
    and the request goes on with a fresh session."""
    app = make_app()
    app.config["TESTING"] = False

    @app.post("/set/<value>")
    def set_(value: str) -> str:
        session["k"] = value * 2000
        return "ok"

    client = app.test_client()
    client.post("/set/a")
    (name,) = os.listdir(session_dir)
    decoy = tmp_path / "decoy"
    if target_exists:
        decoy.write_bytes(b"precious" * 500)
    before = (decoy.stat().st_mtime_ns, decoy.read_bytes()) if target_exists else None
    (session_dir / f"{name}{sidecar}").symlink_to(decoy)

    with caplog.at_level(logging.WARNING, logger="sqlite_session"):
        assert client.post("/set/b").status_code == 200  # a fresh session, logged
    assert any("open" in r.getMessage() for r in caplog.records)
    after = (decoy.stat().st_mtime_ns, decoy.read_bytes()) if decoy.exists() else None
    assert after == before
    assert (session_dir / f"{name}{sidecar}").is_symlink()


def test_a_file_of_another_user_is_never_opened(
    make_app: Callable[..., Flask], session_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Only a co-tenant (or root) puts a file of theirs in the directory: never read it,
    never write through it; the sweeper leaves it alone, whatever its expiry."""
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")

    def user_app() -> Flask:
        app = make_app()

        @app.post("/set/<value>")
        def set_(value: str) -> str:
            session["user"] = value
            return "ok"

        @app.get("/user")
        def user() -> str:
            return str(session.get("user"))

        return app

    client = user_app().test_client()
    client.post("/set/mallory")
    (name,) = os.listdir(session_dir)
    os.chown(session_dir / name, NOBODY, NOBODY)  # as if forged by uid 65534
    caplog.set_level(logging.WARNING, logger="sqlite_session")
    fresh = user_app().test_client()  # no pooled connection to the file
    fresh.set_cookie("session", str(client.get_cookie("session").value))
    assert fresh.get("/user").text == "None"
    assert any(f"belongs to uid {NOBODY}" in r.getMessage() for r in caplog.records)
    report = sweep(session_dir, grace=0, now=4e9)
    assert (report.unsafe, report.removed, report.broken_removed) == (1, 0, 0)
    assert (session_dir / name).exists()
