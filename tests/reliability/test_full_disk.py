"""A full session filesystem: a tiny tmpfs mounted by the test, then filled to the brim.

A save that needs space fails with a logged error and :class:`SessionStorageFull`
(which the app turns into a response of its own), nothing already stored is damaged,
and once space is freed the very next request saves normally. Skipped where this
process may not mount a tmpfs.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from core_helpers import session_files, set_stored_expiry
from flask import Flask, jsonify, session
from servers import handle_session_errors
from tmpfs import mounted_tmpfs

from sqlite_session import SessionStorageFull
from sqlite_session.ids import new_session_id
from sqlite_session.janitor import RECORD_NAME, sweep
from sqlite_session.store import Changes, SessionStore

OPTIONS = "size=256k,nr_inodes=64,mode=0700"


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 256 KiB and 64 inodes at ``tmp_path/mnt``, unmounted afterwards."""
    with mounted_tmpfs(tmp_path / "mnt", OPTIONS) as mount_point:
        yield mount_point


def fill_blocks(filler: Path) -> None:
    """Write a file until the filesystem refuses another byte."""
    fd = os.open(filler / "blocks", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for size in (65536, 4096, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def fill_inodes(filler: Path) -> None:
    """Create empty files until the filesystem has no inode left."""
    try:
        for n in range(10_000):
            (filler / str(n)).touch()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    else:
        raise AssertionError("the tmpfs never ran out of inodes")


def fill_up(tiny_tmpfs: Path, fill: Callable[[Path], None] = fill_blocks) -> Path:
    """Fill the tiny tmpfs from a directory of its own; remove that directory to free it."""
    filler = tiny_tmpfs / "filler"
    filler.mkdir()
    fill(filler)
    return filler


def full_app(make_app: Callable[..., Flask]) -> Flask:
    # No reserve: what a full filesystem does to any save. With one, a new anonymous
    # session is simply not stored there (tests/storage/test_anonymous_sessions.py).
    app = make_app(reserve_fraction=0)
    app.config["TESTING"] = False  # errors reach the app's handlers, as in production
    handle_session_errors(app)

    @app.post("/put/<key>/<int:size>")
    def put(key: str, size: int) -> str:
        session[key] = "x" * size
        return "ok"

    @app.get("/get")
    def get() -> Any:
        return jsonify({key: len(value) for key, value in session.items()})

    return app


def with_logout(app: Flask) -> Flask:
    @app.post("/logout")
    def logout() -> str:
        session.clear()  # (without a read first)
        return "bye"

    return app


@pytest.fixture
def session_dir(tiny_tmpfs: Path) -> Path:
    """The session directory of ``make_app``, on the tiny tmpfs."""
    return tiny_tmpfs / "sessions"


@pytest.mark.parametrize("fill", [fill_blocks, fill_inodes], ids=["blocks", "inodes"])
def test_full_disk(
    fill: Callable[[Path], None],
    tiny_tmpfs: Path,
    session_dir: Path,
    make_app: Callable[..., Flask],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = full_app(make_app)
    client, newcomer = app.test_client(), app.test_client()
    assert client.post("/put/stored/3000").status_code == 200
    (name,) = session_files(session_dir)
    stored = session_dir / name
    before = stored.read_bytes()

    filler = fill_up(tiny_tmpfs, fill)
    with caplog.at_level(logging.ERROR, logger="sqlite_session"):
        grow = client.post("/put/more/20000")  # an existing session needs more pages
        create = newcomer.post("/put/first/20000")  # a new session needs a new file
    for response in (grow, create):
        assert response.status_code == 409
        assert response.json == {"error": SessionStorageFull.__name__, "where": "save"}
        assert "Set-Cookie" not in response.headers
    assert sum("full" in r.getMessage() for r in caplog.records) >= 2
    assert stored.read_bytes() == before  # rolled back, not damaged
    assert client.get("/get").json == {"stored": 3000}
    # No temporary file and no new session. The failed opens may leave the stored
    # session's own -wal/-shm behind (SQLite reuses them at its next open).
    assert set(os.listdir(session_dir)) - {f"{name}-wal", f"{name}-shm"} == {name}

    shutil.rmtree(filler)
    assert client.post("/put/more/20000").status_code == 200
    assert client.get("/get").json == {"stored": 3000, "more": 20000}
    assert newcomer.post("/put/first/20000").status_code == 200
    assert newcomer.get("/get").json == {"first": 20000}
    for path in session_files(session_dir):
        conn = apsw.Connection(str(session_dir / path), flags=apsw.SQLITE_OPEN_READONLY)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.close()


def test_the_sweeper_frees_a_full_disk(tiny_tmpfs: Path, session_dir: Path) -> None:
    """A full tmpfs is when the janitor matters most, though SQLite cannot open a session
    there (no room for its -shm file): expired sessions still go, live ones stay."""
    session_dir.mkdir(mode=0o700)
    store = SessionStore(str(session_dir))
    expired = [new_session_id() for _ in range(3)]
    for sid in expired:
        store.create(sid, Changes(upserts={"k": b"1"}, expires_at=time.time() - 5))
    live = new_session_id()
    store.create(live, Changes(upserts={"k": b"2"}, expires_at=time.time() + 3600))
    fill_up(tiny_tmpfs)

    report = sweep(session_dir, grace=0)

    assert (report.removed, report.errors, report.broken) == (3, 0, 0)
    assert sorted(os.listdir(session_dir)) == [f"{live}.session"]  # no -wal/-shm left either
    assert store.handle(live).read("k") == (b"2", 0)  # read while the disk is still full
    opened = store.open(live, "k", hold=True)
    assert opened.row == (b"2", 0) and opened.handle is not None
    assert not opened.handle.held  # a snapshot is never held


def test_a_full_disk_never_serves_a_state_older_than_the_wal(
    tiny_tmpfs: Path, session_dir: Path
) -> None:
    """A worker killed with the session open leaves its last commits in the -wal only.
    With no room for a -shm, the file alone is not the truth: a clear error, never the
    older state (which could be a session from before a logout)."""
    session_dir.mkdir(mode=0o700)
    store = SessionStore(str(session_dir))
    sid = new_session_id()
    store.create(sid, Changes(upserts={"user": b'"alice"'}, expires_at=time.time() + 3600))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child is killed before coverage is written
        store.write(sid, Changes(upserts={"user": b'"bob"'}, expires_at=time.time() + 3600))
        os.kill(os.getpid(), 9)  # killed with its connection open: the commit is in the -wal
    os.waitpid(pid, 0)
    wal = Path(store.path_for(sid) + "-wal")
    assert wal.stat().st_size > 32
    Path(store.path_for(sid) + "-shm").unlink()  # so the next open must make a new one
    filler = fill_up(tiny_tmpfs)

    with pytest.raises(SessionStorageFull):
        store.open(sid, "user")
    assert sweep(session_dir, now=time.time() + 7200, grace=0).busy == 1  # left for later

    shutil.rmtree(filler)
    assert store.open(sid, "user").row == (b'"bob"', 1)


def test_a_due_refresh_on_a_full_disk_keeps_the_read(
    tiny_tmpfs: Path, make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    client = full_app(make_app).test_client()
    assert client.post("/put/stored/3000").status_code == 200
    session_dir = tiny_tmpfs / "sessions"
    (name,) = session_files(session_dir)
    set_stored_expiry(session_dir, name.removesuffix(".session"), time.time() + 60)  # due
    fill_up(tiny_tmpfs)

    with caplog.at_level(logging.WARNING, logger="sqlite_session"):
        response = client.get("/get")

    assert (response.status_code, response.json) == (200, {"stored": 3000})
    assert any("refresh skipped" in r.getMessage() for r in caplog.records)


def fill_everything(filler: Path) -> None:
    """No block and no inode left."""
    fill_blocks(filler)
    fill_inodes(filler)


def test_the_janitor_command_frees_a_full_disk_with_its_defaults(
    tiny_tmpfs: Path, session_dir: Path
) -> None:
    """``sqlite-session sweep PATH`` as cron runs it, on a filesystem with no block and no
    inode left: it needs to create nothing, removes every expired session whatever its
    ``--grace`` (those whose mtime mirrors the expiry on their lstat, the others read
    without a lock), keeps the live one, says what it freed, and exits 0."""
    session_dir.mkdir(mode=0o700)
    store = SessionStore(str(session_dir))
    mirrored = [new_session_id() for _ in range(3)]
    for sid in mirrored:
        store.create(sid, Changes(upserts={"k": b"1"}, expires_at=time.time() - 5))
    unmirrored = new_session_id()  # written by SQLite since: its mtime mirrors nothing
    store.create(unmirrored, Changes(upserts={"k": b"1"}, expires_at=time.time() + 3600))
    set_stored_expiry(session_dir, unmirrored, time.time() - 5)
    live = new_session_id()
    store.create(live, Changes(upserts={"k": b"2"}, expires_at=time.time() + 3600))
    fill_up(tiny_tmpfs, fill_everything)
    time.sleep(0.01)  # (the unmirrored file's mtime is its last write: now in the past)

    result = subprocess.run(
        [sys.executable, "-m", "sqlite_session", "sweep", str(session_dir)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("removed 4 expired of 5 sessions, freeing 16 KiB, in ")
    assert set(os.listdir(session_dir)) - {RECORD_NAME} == {f"{live}.session"}
    assert store.open(live, "k").row == (b"2", 0)


def test_removals_need_no_space(
    tiny_tmpfs: Path,
    session_dir: Path,
    make_app: Callable[..., Flask],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On a filesystem with no block and no inode left, a logout (``clear()``) and the
    deletion of a session's last key still take the session away: the cookie is deleted,
    the file goes (without its tombstone if there is no room for one), and the old
    cookie leads to nothing."""
    app = with_logout(full_app(make_app))

    @app.post("/drop/<key>")
    def drop(key: str) -> str:
        session.pop(key, None)
        return "dropped"

    users = [app.test_client() for _ in range(3)]
    for user in users:
        assert user.post("/put/cart/100").status_code == 200
    cookies = [user.get_cookie("session").value for user in users]  # type: ignore[union-attr]
    assert users[1].get("/get").json == {"cart": 100}  # its connection is pooled
    fill_up(tiny_tmpfs, fill_everything)

    with caplog.at_level(logging.WARNING, logger="sqlite_session"):
        answers = [
            users[0].post("/logout"),  # its file cannot even be opened: no room for a -shm
            users[1].post("/logout"),  # opened already
            users[2].post("/drop/cart"),  # the last key
        ]

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    for answer in answers:
        assert "session=;" in answer.headers["Set-Cookie"]  # the cookie is deleted
    assert session_files(session_dir) == []
    for cookie in cookies:
        replay = app.test_client()
        replay.set_cookie("session", cookie)
        assert replay.get("/get").json == {}
    assert any("without a tombstone" in r.getMessage() for r in caplog.records)


def test_a_logout_with_a_regenerated_id_on_a_full_disk_changes_nothing(
    tiny_tmpfs: Path, session_dir: Path, make_app: Callable[..., Flask]
) -> None:
    """A logout (a ``clear()`` without a read) still carrying the id a login has just
    regenerated, on a disk too full to open that file for writing, is discarded as it is
    with room: the tombstone stays and the client's new cookie is not deleted."""
    app = with_logout(full_app(make_app))

    @app.post("/login")
    def login() -> str:
        session.regenerate()
        return "in"

    client = app.test_client()
    assert client.post("/put/cart/100").status_code == 200
    old_cookie = client.get_cookie("session").value  # type: ignore[union-attr]
    assert client.post("/login").status_code == 200
    files = session_files(session_dir)
    assert len(files) == 2  # the new session and the old id's tombstone
    app.session_interface.store.connector.pool.close_idle()  # type: ignore[attr-defined]
    fill_up(tiny_tmpfs, fill_everything)  # no room for the tombstone's -shm

    late = app.test_client()
    late.set_cookie("session", old_cookie)
    answer = late.post("/logout")

    assert answer.status_code == 200
    assert "Set-Cookie" not in answer.headers
    assert session_files(session_dir) == files
    assert client.get("/get").json == {"cart": 100}
