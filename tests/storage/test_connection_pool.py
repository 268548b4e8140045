"""The per-process pool of open connections: bounded, and never serving a stale file.

A pooled connection stays open on the inode it was opened on; the pool must notice when
the path names another file or none (an operator deleting a session file to revoke a
login, a file replaced behind its back) and must never hold more than its capacity.
"""

from __future__ import annotations

import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest
from core_helpers import after_revalidation, open_session_files, sid_of, spy_io, statements
from flask import Flask, session

from sqlite_session import SqliteSessionInterface
from sqlite_session.ids import new_session_id
from sqlite_session.store import Changes, OpenStatus, SessionStore, checkout


def make(store: SessionStore, value: bytes) -> str:
    sid = new_session_id()
    store.create(sid, Changes(upserts={"k": value}, expires_at=time.time() + 3600))
    return sid


def test_a_deleted_session_file_is_not_served_from_the_pool(tmp_path: Path) -> None:
    """Deleting a session's file by hand revokes it, even in a process that has it open
    (within REVALIDATE_AFTER: the requests of the next 0.1 s may still be served)."""
    store = SessionStore(str(tmp_path))
    sid = make(store, b'"secret"')
    assert store.open(sid, "k").row == (b'"secret"', 0)  # now pooled
    assert open_session_files(tmp_path) == [store.path_for(sid)]

    os.unlink(store.path_for(sid))
    after_revalidation()

    assert store.open(sid, "k").status is OpenStatus.MISSING
    assert open_session_files(tmp_path) == []  # the connection to the deleted file closed


def session_file_lstats(events: list[tuple[str, str]]) -> int:
    """The lstat calls on session files (opening one also checks its -wal and -shm)."""
    return sum(op == "os.lstat" and path.endswith(".session") for op, path in events)


def test_a_connection_checked_moments_ago_is_reused_without_an_lstat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of requests pays for one lstat; a removal through the store (here by a
    second store, as another process would) is seen at once all the same: the removed
    file holds a tombstone that the pooled connection reads."""
    monkeypatch.setattr(checkout, "REVALIDATE_AFTER", 60.0)  # however slow the machine
    store, other = SessionStore(str(tmp_path)), SessionStore(str(tmp_path))
    sid = make(store, b'"secret"')
    with spy_io(tmp_path) as first:
        assert store.open(sid, "k").row == (b'"secret"', 0)  # opened: now pooled
    with spy_io(tmp_path) as burst:
        for _ in range(3):
            assert store.open(sid, "k").row == (b'"secret"', 0)
    assert session_file_lstats(first.events) == 1
    assert session_file_lstats(burst.events) == 0

    other.write(sid, Changes(deletes={"k"}, expires_at=time.time() + 60))  # emptied: removed
    assert not os.path.exists(store.path_for(sid))
    with spy_io(tmp_path) as after:
        opened = store.open(sid, "k")
    assert [op for op, _ in after.events].count("os.lstat") == 0  # the pooled connection
    assert opened.status is OpenStatus.EXPIRED and opened.row is None


def test_a_replaced_session_file_is_read_afresh(tmp_path: Path) -> None:
    store = SessionStore(str(tmp_path))
    sid, other = make(store, b'"old"'), make(store, b'"new"')
    assert store.open(sid, "k").row == (b'"old"', 0)  # pooled, on the old inode

    os.rename(store.path_for(other), store.path_for(sid))
    after_revalidation()

    assert store.open(sid, "k").row == (b'"new"', 0)
    assert open_session_files(tmp_path) == [store.path_for(sid)]  # the stale one was closed


def test_the_pool_keeps_at_most_its_capacity_least_recently_used_first(tmp_path: Path) -> None:
    store = SessionStore(str(tmp_path), connection_cache_size=3)
    sids = [make(store, str(i).encode()) for i in range(10)]
    for sid in sids:
        assert store.open(sid, "k").status is OpenStatus.LIVE
    assert sorted(open_session_files(tmp_path)) == sorted(store.path_for(s) for s in sids[-3:])
    store.open(sids[-3], "k")  # used again: now the most recent
    store.open(sids[0], "k")  # evicts the least recently used, sids[-2]
    expected = [sids[-3], sids[-1], sids[0]]
    assert sorted(open_session_files(tmp_path)) == sorted(store.path_for(s) for s in expected)


def test_a_pool_of_capacity_zero_keeps_nothing_open(tmp_path: Path) -> None:
    store = SessionStore(str(tmp_path), connection_cache_size=0)
    sid = make(store, b"1")
    assert store.open(sid, "k").row == (b"1", 0)
    assert open_session_files(tmp_path) == []
    assert os.listdir(tmp_path) == [f"{sid}.session"]  # the last close removed -wal/-shm


def test_an_open_sessions_wal_shrinks_back_after_a_large_write(tmp_path: Path) -> None:
    """A checkpoint rewinds the WAL without shrinking it; the store caps what it keeps."""
    store = SessionStore(str(tmp_path))
    sid = make(store, b"1")
    store.write(sid, Changes(upserts={"big": b"x" * 1_000_000}, expires_at=time.time() + 60))
    for i in range(50):  # small writes while the session stays open (pooled)
        store.write(sid, Changes(upserts={"k": str(i).encode()}, expires_at=time.time() + 60))
    assert open_session_files(tmp_path) == [store.path_for(sid)]
    assert os.stat(store.path_for(sid) + "-wal").st_size <= 32 * 1024


def test_a_cache_that_could_exhaust_file_descriptors_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    with caplog.at_level(logging.WARNING, logger="sqlite_session"):
        SqliteSessionInterface(tmp_path / "ok")
        assert caplog.records == []
        SqliteSessionInterface(tmp_path / "big", connection_cache_size=soft)
    assert any("ulimit -n" in r.getMessage() for r in caplog.records)


# -- the connection a request holds from its first read to its save ------------------------


def lease_app(make_app: Callable[..., Flask]) -> Flask:
    app = make_app()
    app.config["TESTING"] = False

    @app.get("/set")
    def set_() -> str:
        session.update(a=1, b=2, c=3)
        return "ok"

    @app.get("/work")
    def work() -> str:
        total = session["a"] + session["b"] + session["c"]  # three keys read
        session["n"] = total  # and one written
        return str(total)

    @app.get("/fail")
    def fail() -> str:
        _ = session["a"]
        raise RuntimeError("the view failed after reading")

    @app.get("/logout")
    def logout() -> str:
        _ = session["a"]
        session.clear()
        return "bye"

    return app


def test_one_checkout_per_request_however_many_keys_it_touches(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    writer = lease_app(make_app).test_client()
    writer.get("/set")
    client = lease_app(make_app).test_client()  # a fresh interface: nothing pooled yet
    client.set_cookie("session", writer.get_cookie("session").value)  # type: ignore[union-attr]
    with spy_io(session_dir) as log:
        assert client.get("/work").text == "6"
    # One checkout (was four: one per access); the write judges the expiry mirror from
    # the bound stored in the file, without looking at the file (see store.mirror.cover).
    assert session_file_lstats(log.events) == 1
    assert len(open_session_files(session_dir)) == 1  # it went back to the pool at the end
    with spy_io(session_dir) as log:
        assert client.get("/work").text == "6"
    assert not [e for e in log.events if e[0] == "sqlite.open"]  # and serves the next one


def test_a_write_without_a_read_looks_the_session_up_inside_its_transaction(
    make_app: Callable[..., Flask],
) -> None:
    """A request that changes the session without reading it (a value set, a logout's
    clear) reads the meta row once, under the write lock: no read of its own before."""
    writer = lease_app(make_app).test_client()
    writer.get("/set")
    with statements() as seen:
        client = lease_app(make_app).test_client()  # a fresh interface: nothing pooled yet
        client.set_cookie("session", writer.get_cookie("session").value)  # type: ignore[union-attr]
        assert client.get("/set").text == "ok"
    meta_reads = [i for i, sql in enumerate(seen) if "FROM meta" in sql]
    assert len(meta_reads) == 1, seen
    assert seen.index("BEGIN IMMEDIATE") < meta_reads[0] < seen.index("COMMIT"), seen
    assert client.get("/work").text == "6"  # written to the session the cookie names


@pytest.mark.parametrize("path", ["/fail", "/logout"])
def test_the_held_connection_is_given_back_or_closed(
    make_app: Callable[..., Flask], session_dir: Path, path: str
) -> None:
    """A failed view (nothing saved) gives it back; a logout closes it with the file."""
    client = lease_app(make_app).test_client()
    client.get("/set")
    response = client.get(path)
    if path == "/fail":
        assert response.status_code == 500
        assert len(open_session_files(session_dir)) == 1
    else:
        assert response.text == "bye"
        assert open_session_files(session_dir) == []
        assert os.listdir(session_dir) == []  # no -wal/-shm left either


def test_a_file_deleted_by_hand_during_a_request_is_never_brought_back(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    """The held connection still writes the request's save, into the deleted file: the
    path stays gone, and the next request (after REVALIDATE_AFTER) starts afresh."""
    app = lease_app(make_app)

    @app.get("/revoke-during")
    def revoke_during() -> str:
        _ = session["a"]
        for name in os.listdir(session_dir):  # an operator revokes the session now
            os.unlink(session_dir / name)
        session["n"] = 1
        return "ok"

    client = app.test_client()
    client.get("/set")
    assert client.get("/revoke-during").status_code == 200
    assert os.listdir(session_dir) == []
    after_revalidation()
    assert client.get("/work").status_code == 500  # KeyError: a fresh, empty session


def test_damage_met_inside_atomic_gives_a_fresh_session_not_a_500(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    """Inside atomic() the held connection belongs to the transaction block, which must
    be the one to close it (closing it early broke the busy-timeout restore: a 500)."""
    app = lease_app(make_app)

    @app.get("/atomic-bad")
    def atomic_bad() -> str:
        _ = session["a"]
        with session.atomic(2.0):
            return repr(session.get("b"))

    client = app.test_client()
    client.get("/set")
    (name,) = os.listdir(session_dir)
    conn = apsw.Connection(str(session_dir / name))
    conn.execute("UPDATE kv SET value = 123 WHERE key = 'b'")  # not an encoded value
    conn.close()
    response = client.get("/atomic-bad")
    assert (response.status_code, response.text) == (200, "None")


WRITE_FROM_ANOTHER_PROCESS = """
import sys, time
from sqlite_session.store import Changes, SessionStore
store = SessionStore(sys.argv[1])
if sys.argv[3] == "add":
    changes = Changes(upserts={"x": b"7"}, expires_at=time.time() + 3600)
else:
    changes = Changes(clear=True)
print(store.write(sys.argv[2], changes).value)
"""


@pytest.mark.parametrize("change", ["add", "clear"])
def test_a_save_sees_what_another_process_committed_after_its_first_read(
    make_app: Callable[..., Flask], session_dir: Path, change: str
) -> None:
    """The held connection's write transaction trusts the meta row it read at first
    access only if nothing was committed since: here another process commits in between
    (a new key, or a logout that removes the session)."""
    app = lease_app(make_app)
    interface = app.session_interface
    assert isinstance(interface, SqliteSessionInterface)

    @app.get("/meanwhile")
    def meanwhile() -> str:
        total = session["a"]  # the meta row is read now
        sid = session.sid  # type: ignore[attr-defined]
        done = subprocess.run(
            [sys.executable, "-c", WRITE_FROM_ANOTHER_PROCESS, str(session_dir), sid, change],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        session["n"] = total
        return done.stdout.strip()

    client = app.test_client()
    client.get("/set")
    (name,) = os.listdir(session_dir)
    response = client.get("/meanwhile")
    if change == "clear":
        assert response.text == "removed"
        assert os.listdir(session_dir) == []  # the logout stands: nothing written back
        return
    assert response.text == "written"
    conn = apsw.Connection(str(session_dir / name))
    try:
        rows = dict(conn.execute("SELECT key, version FROM kv").fetchall())
        ((nkeys, seq),) = conn.execute("SELECT nkeys, seq FROM meta").fetchall()
    finally:
        conn.close()
    assert set(rows) == {"a", "b", "c", "x", "n"} and nkeys == 5
    assert rows["n"] == rows["x"] == seq  # each write left the counter, as it found it


def test_a_blind_write_on_a_pooled_connection_reuses_the_meta_row_it_left(
    make_app: Callable[..., Flask],
) -> None:
    """A write without a read, on the connection the last write of the same session gave
    back to the pool, reads no meta row: nothing was committed since."""
    writer = lease_app(make_app).test_client()
    writer.get("/set")
    with statements() as seen:
        client = lease_app(make_app).test_client()  # a fresh interface: nothing pooled yet
        client.set_cookie("session", writer.get_cookie("session").value)  # type: ignore[union-attr]
        assert client.get("/set").text == "ok"  # reads the meta row under the lock
        assert client.get("/set").text == "ok"  # on the pooled connection: no need
    meta_reads = [sql for sql in seen if "FROM meta" in sql]
    assert len(meta_reads) == 1 and seen.count("COMMIT") == 2, seen


@pytest.mark.parametrize("change", ["add", "clear"])
def test_a_blind_write_on_a_pooled_connection_sees_another_process_commit(
    make_app: Callable[..., Flask],
    session_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: str,
) -> None:
    """The meta row a pooled connection knows is trusted only while nothing was committed
    since: here another process adds a key, or logs the session out, between two writes
    that do not read the session (the connection is reused without looking at the path)."""
    monkeypatch.setattr(checkout, "REVALIDATE_AFTER", 60.0)
    app = lease_app(make_app)

    @app.get("/blind")
    def blind() -> str:
        session["blind"] = 1
        return "ok"

    client = app.test_client()
    client.get("/set")
    client.get("/set")  # back in the pool, knowing the meta row
    (name,) = [n for n in os.listdir(session_dir) if n.endswith(".session")]
    sid = name.removesuffix(".session")
    done = subprocess.run(
        [sys.executable, "-c", WRITE_FROM_ANOTHER_PROCESS, str(session_dir), sid, change],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert client.get("/blind").text == "ok"
    if change == "clear":
        assert done.stdout.strip() == "removed"
        assert name not in os.listdir(session_dir)  # the logout stands
        assert sid_of(client) != sid  # what the request set went into a new session
        return
    assert done.stdout.strip() == "written"
    conn = apsw.Connection(str(session_dir / name))
    try:
        keys = {key for (key,) in conn.execute("SELECT key FROM kv")}
        ((nkeys,),) = conn.execute("SELECT nkeys FROM meta").fetchall()
    finally:
        conn.close()
    assert keys == {"a", "b", "c", "x", "blind"} and nkeys == 5
