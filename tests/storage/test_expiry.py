"""Expiry lives in the session file and is enforced without any sweeper.

Time passing is simulated by rewriting the stored expiry with apsw, except in one test
that waits (about a second) for a real, short PERMANENT_SESSION_LIFETIME to run out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import apsw
import pytest
from core_helpers import (
    add_counter,
    after_revalidation,
    session_path,
    set_stored_expiry,
    sid_of,
    stored_meta,
    stored_rows,
)
from flask import Flask, session
from flask.testing import FlaskClient
from werkzeug.http import parse_date

from sqlite_session.ids import new_session_id
from sqlite_session.janitor import LSTAT_GRACE, sweep
from sqlite_session.store import Changes, SessionStore, WriteOutcome, checkout
from sqlite_session.store.mirror import mirrored

LIFETIME = 100.0


def routes(app: Flask, *, permanent: bool = False) -> FlaskClient:
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=LIFETIME)
    return add_counter(app, permanent=permanent).test_client()


@pytest.mark.parametrize("permanent", [False, True])
def test_expiry_is_stored_in_the_file_for_every_session(
    app: Flask, session_dir: Path, permanent: bool
) -> None:
    client = routes(app, permanent=permanent)
    before = time.time()
    client.get("/count")
    meta = stored_meta(session_dir, sid_of(client))
    assert before + LIFETIME <= meta["expires_at"] <= time.time() + LIFETIME
    assert bool(meta["permanent"]) is permanent
    # mirrored into the mtime, for the sweeper
    assert_mirrors(session_path(session_dir, sid_of(client)), meta["expires_at"], LIFETIME)


def assert_mirrors(path: Path, expiry: float, lead: float) -> None:
    """The file's mtime is a tagged mirror of ``expiry``: at or after it, by little."""
    bound = mirrored(path.stat())
    assert bound is not None and expiry <= bound <= expiry + lead + 2


def test_every_write_keeps_the_mirror_at_or_after_the_stored_expiry(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    """The stored bound covers the expiry and the mtime covers the bound, after every
    write; a file SQLite wrote since (no mirror) is mirrored again by the first write
    whose expiry passes the stored bound."""
    client = routes(make_app(refresh_fraction=0.1))
    client.get("/count")
    path = session_path(session_dir, sid_of(client))
    for _ in range(3):
        client.get("/count")
        meta = stored_meta(session_dir, sid_of(client))
        assert meta["expires_at"] <= meta["mirror"]
        assert_mirrors(path, meta["mirror"], 0.0)
    os.utime(path)  # mtime = ctime = now, as a WAL checkpoint leaves it: no mirror
    assert mirrored(path.stat()) is None
    conn = apsw.Connection(str(path))
    # As once the expiry moved past the bound, and long enough ago that it is due a move.
    conn.execute("UPDATE meta SET expires_at = expires_at - 20, mirror = expires_at - 20")
    conn.close()
    after_revalidation()
    client.get("/count")
    assert_mirrors(path, stored_meta(session_dir, sid_of(client))["expires_at"], LIFETIME)


@pytest.fixture
def utimes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths ``os.utime`` is called on from now on (a new file's, by descriptor, not)."""
    calls: list[str] = []
    real_utime = os.utime

    def utime_spy(target: str | int, *args: Any, **kwargs: Any) -> None:
        if isinstance(target, str):
            calls.append(target)
        real_utime(target, *args, **kwargs)

    monkeypatch.setattr(os, "utime", utime_spy)
    return calls


def add_keys(store: SessionStore, sid: str, names: list[str]) -> None:
    """One write per name, each adding that key, in strict mode (``expected``): a write
    that stores the meta row, its expiry included, every time."""
    for name in names:
        changes = Changes(upserts={name: b'"v"'}, expires_at=time.time() + LIFETIME, expected={})
        assert store.write(sid, changes) is WriteOutcome.WRITTEN


def test_writes_under_the_stored_bound_leave_the_mtime_alone(
    tmp_path: Path, utimes: list[str]
) -> None:
    """A mirror that must move is set a little beyond the new expiry (10% of the
    lifetime here), and that bound is stored with it: the writes that store the meta row
    within it (here strict ones) need no utime of their own."""
    store = SessionStore(str(tmp_path), refresh_fraction=0.1)
    sid = new_session_id()
    store.create(sid, Changes(upserts={"k": b'"v"'}, expires_at=time.time() + LIFETIME))
    add_keys(store, sid, ["a", "b", "c", "d", "e"])
    path = store.path_for(sid)
    assert utimes == [path]  # the first write passed the new file's bound
    meta = store.open(sid).meta
    assert meta is not None and meta.nkeys == 6 and meta.mirror is not None
    assert meta.mirror >= meta.expires_at
    assert_mirrors(Path(path), meta.expires_at, LIFETIME * 0.1)


def test_a_file_of_format_3_is_mirrored_at_every_write(tmp_path: Path, utimes: list[str]) -> None:
    """A file written before the bound was stored (format 3) has none to trust: each
    write that stores the meta row sets the mirror, and the file is read and written as
    it is."""
    store = SessionStore(str(tmp_path), refresh_fraction=0.1)
    sid = new_session_id()
    store.create(sid, Changes(upserts={"k": b'"v"'}, expires_at=time.time() + LIFETIME))
    conn = apsw.Connection(store.path_for(sid))
    conn.execute("ALTER TABLE meta DROP COLUMN mirror; PRAGMA user_version=3")
    conn.close()
    add_keys(store, sid, ["a", "b"])
    assert utimes == [store.path_for(sid)] * 2
    opened = store.open(sid, "b")
    assert opened.meta is not None and opened.meta.mirror is None
    assert opened.row == (b'"v"', 2)
    assert_mirrors(Path(store.path_for(sid)), opened.meta.expires_at, LIFETIME * 0.1)


def test_a_shorter_expiry_brings_the_mirror_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that shortens the expiry (a shorter lifetime, as in a rolling deploy)
    brings the mirror down after its commit, under the lock: left at the longer expiry,
    it would hide the expired session from the sweeper until then. Two connections to
    the session (two threads or workers) make no difference: the mirror on disk is what
    each write looks at."""
    monkeypatch.setattr(checkout, "REVALIDATE_AFTER", 60.0)  # reuse without a check
    store = SessionStore(str(tmp_path), refresh_fraction=0.1)
    short, long = 1800.0, 31 * 86400.0
    sid = new_session_id()
    store.create(sid, Changes(upserts={"k": b'"v"'}, expires_at=time.time() + short))
    first = store.open(sid, "k", hold=True).handle
    second = store.open(sid, "k", hold=True).handle
    assert first is not None and second is not None
    first.write(Changes(upserts={"k": b'"1"'}, expires_at=time.time() + long))  # moves the mirror
    first.release()
    second.release()  # given back last: handed out next
    handle = store.open(sid, "k", hold=True).handle
    assert handle is not None
    handle.write(Changes(upserts={"k": b'"2"'}, expires_at=time.time() + short))
    handle.release()

    expiry = store.open(sid).meta.expires_at  # type: ignore[union-attr]
    assert_mirrors(Path(store.path_for(sid)), expiry, 0.0)
    report = sweep(str(tmp_path), now=expiry + LSTAT_GRACE + 2)
    assert report.removed == 1
    assert not os.path.exists(store.path_for(sid))


def test_a_write_pushes_the_expiry(app: Flask, session_dir: Path) -> None:
    client = routes(app)
    client.get("/count")
    sid = sid_of(client)
    set_stored_expiry(session_dir, sid, time.time() + 5)
    client.get("/count")
    assert stored_meta(session_dir, sid)["expires_at"] > time.time() + LIFETIME - 5


def test_a_write_moves_the_expiry_at_most_once_per_refresh_fraction(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    """As a read does: a write within ``refresh_fraction`` of the lifetime since the
    expiry last moved stores its rows and leaves the meta row (expiry, change counter)
    as it was; once that much has passed, the write moves the expiry."""
    client = routes(make_app(refresh_fraction=0.1))
    client.get("/count")
    sid = sid_of(client)
    first = stored_meta(session_dir, sid)
    assert client.get("/count").text == "2"
    assert stored_meta(session_dir, sid) == first
    assert stored_rows(session_dir, sid)["n"] == b"2"
    set_stored_expiry(session_dir, sid, first["expires_at"] - 0.15 * LIFETIME)
    assert client.get("/count").text == "3"
    pushed = stored_meta(session_dir, sid)
    assert pushed["expires_at"] >= time.time() + LIFETIME - 2
    assert pushed["seq"] == first["seq"] + 1


def test_every_write_moves_the_change_counter_in_strict_mode(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    """Strict mode judges conflicts by the change counter: every write moves it."""
    client = routes(make_app(strict=True, refresh_fraction=0.1))
    client.get("/count")
    sid = sid_of(client)
    seqs = []
    for _ in range(3):
        client.get("/count")
        seqs.append(stored_meta(session_dir, sid)["seq"])
    assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]


def test_strict_mode_takes_over_sessions_the_default_mode_wrote(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    """A default-mode write that leaves the change counter stamps no key past it: a
    strict app serving those sessions later (strict mode switched on) can still write
    them. A key stamped past it would be taken for another request's change at every
    write that does not read it first: a conflict the user could never get past."""

    def app_with_a_blind_write(**options: Any) -> FlaskClient:
        app = make_app(refresh_fraction=0.1, **options)

        @app.get("/visit")
        def visit() -> str:
            session["page"] = "/visit"  # written without being read
            return "ok"

        return app.test_client()

    default = app_with_a_blind_write()
    default.get("/visit")
    default.get("/visit")  # leaves the meta row: the change counter stays
    sid = sid_of(default)
    strict = app_with_a_blind_write(strict=True)
    strict.set_cookie("session", default.get_cookie("session").value)  # type: ignore[union-attr]
    for _ in range(2):
        assert strict.get("/visit").text == "ok"
    assert sid_of(strict) == sid
    assert stored_meta(session_dir, sid)["seq"] == 2  # strict writes move it, each one


def test_a_write_that_leaves_the_counter_stamps_it_and_stores_only_the_key_count(
    tmp_path: Path,
) -> None:
    """Within the refresh fraction, a write stamps its keys with the counter it found and
    leaves the meta row, storing only the key count when it adds or removes a key."""
    store = SessionStore(str(tmp_path), refresh_fraction=0.1)
    sid = new_session_id()
    store.create(sid, Changes(upserts={"k": b"0"}, expires_at=time.time() + LIFETIME))
    created = store.open(sid).meta
    assert created is not None

    def write(changes: Changes) -> tuple[tuple[float, int, int], dict[str, int]]:
        changes.expires_at = time.time() + LIFETIME
        assert store.write(sid, changes) is WriteOutcome.WRITTEN
        conn = apsw.Connection(store.path_for(sid))
        try:
            ((meta),) = conn.execute("SELECT expires_at, seq, nkeys FROM meta").fetchall()
            return meta, dict(conn.execute("SELECT key, version FROM kv").fetchall())
        finally:
            conn.close()

    expiry = created.expires_at
    assert write(Changes(upserts={"k": b"1"})) == ((expiry, 0, 1), {"k": 0})
    assert write(Changes(upserts={"k": b"2", "new": b"1"})) == ((expiry, 0, 2), {"k": 0, "new": 0})
    assert write(Changes(deletes={"k"})) == ((expiry, 0, 1), {"new": 0})


def test_a_permanent_cookie_is_re_sent_by_a_write_only_when_its_expiry_moves(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    client = routes(make_app(refresh_fraction=0.1), permanent=True)
    assert "Expires=" in client.get("/count").headers["Set-Cookie"]
    assert "Set-Cookie" not in client.get("/count").headers
    sid = sid_of(client)
    set_stored_expiry(session_dir, sid, stored_meta(session_dir, sid)["expires_at"] - 20)
    cookie = client.get("/count").headers["Set-Cookie"]
    expires = parse_date(cookie.split("Expires=")[1].split(";")[0])
    assert expires is not None
    stored = stored_meta(session_dir, sid)["expires_at"]
    assert abs(expires.timestamp() - stored) <= 1


def test_an_expired_session_is_never_served(app: Flask, session_dir: Path) -> None:
    client = routes(app)
    client.get("/count")
    client.get("/count")
    sid = sid_of(client)
    set_stored_expiry(session_dir, sid, time.time() - 1)
    assert session_path(session_dir, sid).exists()  # no sweeper ran
    response = client.get("/read")
    assert response.text == "None"
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    client.get("/count")
    assert sid_of(client) != sid
    assert client.get("/read").text == "1"  # a new session, not the old one revived


def test_a_short_real_lifetime_runs_out(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = routes(app)
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=2)
    saved_at = time.time()
    client.get("/count")
    assert client.get("/read").text == "1"  # well within its two seconds
    time.sleep(max(0.0, saved_at + 2.2 - time.time()))
    assert client.get("/read").text == "None"


@pytest.mark.parametrize(
    ("fraction", "elapsed", "refreshed"),
    [(0.1, 5, False), (0.1, 15, True), (0.5, 40, False), (0.5, 60, True), (0.0, 1, True)],
)
def test_read_only_refresh_only_after_a_fraction_of_the_lifetime(
    make_app: Callable[..., Flask],
    session_dir: Path,
    fraction: float,
    elapsed: float,
    refreshed: bool,
) -> None:
    client = routes(make_app(refresh_fraction=fraction))
    client.get("/count")
    sid = sid_of(client)
    rows = stored_rows(session_dir, sid)
    seq = stored_meta(session_dir, sid)["seq"]
    old_expiry = time.time() + LIFETIME - elapsed
    set_stored_expiry(session_dir, sid, old_expiry)
    assert client.get("/read").text == "1"
    meta = stored_meta(session_dir, sid)
    if refreshed:
        assert meta["expires_at"] >= time.time() + LIFETIME - 2
    else:
        assert meta["expires_at"] == old_expiry
    assert stored_rows(session_dir, sid) == rows and meta["seq"] == seq  # no data rewritten


def test_no_read_only_refresh_when_refresh_each_request_is_off(
    app: Flask, session_dir: Path
) -> None:
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False
    client = routes(app)
    client.get("/count")
    sid = sid_of(client)
    old_expiry = time.time() + LIFETIME / 2
    set_stored_expiry(session_dir, sid, old_expiry)
    client.get("/read")
    assert stored_meta(session_dir, sid)["expires_at"] == old_expiry


def test_a_refreshed_permanent_cookie_carries_the_new_expiry(app: Flask, session_dir: Path) -> None:
    client = routes(app, permanent=True)
    client.get("/count")
    sid = sid_of(client)
    set_stored_expiry(session_dir, sid, time.time() + LIFETIME / 2)
    response = client.get("/read")
    expires = parse_date(response.headers["Set-Cookie"].split("Expires=")[1].split(";")[0])
    assert expires is not None
    assert abs(expires.timestamp() - stored_meta(session_dir, sid)["expires_at"]) < 1
    assert expires.timestamp() > time.time() + LIFETIME - 5
