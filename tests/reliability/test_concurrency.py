"""Concurrent requests of one session: lock timeouts, strict mode, regenerate in flight.

The lock tests hold a session's lock in another process; the strict and regenerate
tests choreograph two real HTTP requests on a threaded server with events, so the
interleaving they prove is the one that matters, every time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw
import pytest
import requests
from core_helpers import session_files
from flask import Flask, jsonify, session
from servers import cookie_of, handle_session_errors, threaded_server

from sqlite_session import SessionConflictError, SessionLockTimeout

WAIT = 10.0  # seconds a choreographed step may take before the test gives up


@contextmanager
def lock_held(path: Path, begin: str) -> Iterator[None]:
    """Another process holds ``path``'s lock (``BEGIN IMMEDIATE``/``EXCLUSIVE``) for the block."""
    ready_r, ready_w = os.pipe()
    release_r, release_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(release_w)  # or the read below would never see end-of-file
            conn = apsw.Connection(str(path))
            conn.execute(begin).fetchall()  # all of its statements, not only the first
            os.write(ready_w, b"1")
            os.read(release_r, 1)  # returns when the parent closes its end
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(release_r)
    try:
        assert os.read(ready_r, 1) == b"1", "the lock holder failed"
        yield
    finally:
        os.close(release_w)
        os.close(ready_r)
        os.waitpid(pid, 0)


@pytest.fixture
def lock_app(make_app: Callable[..., Flask]) -> Flask:
    app = make_app(lock_timeout=0.3)
    app.config["TESTING"] = False  # let errors reach the error handlers as in production
    handle_session_errors(app)

    @app.post("/set/<value>")
    def set_(value: str) -> str:
        session["x"] = value
        return "ok"

    @app.post("/atomic/<value>")
    def atomic(value: str) -> str:
        with session.atomic():
            session["x"] = value
        return "ok"

    @app.get("/get")
    def get() -> Any:
        return jsonify(x=session.get("x"))

    return app


def first_session(app: Flask, url: str = "/set/old") -> tuple[Any, Path]:
    """A test client holding a session saved by ``POST url`` (x='old'), and its file."""
    client = app.test_client()
    client.post(url)
    (name,) = session_files(Path(app.session_interface.path))  # type: ignore[attr-defined]
    return client, Path(app.session_interface.path) / name  # type: ignore[attr-defined]


def test_lock_timeout_in_atomic_and_at_save(lock_app: Flask) -> None:
    client, path = first_session(lock_app)
    with lock_held(path, "BEGIN IMMEDIATE"):
        in_view = client.post("/atomic/new")
        at_save = client.post("/set/new")
        assert client.get("/get").json == {"x": "old"}  # readers are not blocked
    assert (in_view.status_code, in_view.json) == (
        409,
        {"error": SessionLockTimeout.__name__, "where": "view"},
    )
    assert (at_save.status_code, at_save.json) == (
        409,
        {"error": SessionLockTimeout.__name__, "where": "save"},
    )
    assert "Set-Cookie" not in in_view.headers
    assert client.get("/get").json == {"x": "old"}  # nothing was written
    assert client.post("/atomic/after").status_code == 200  # the lock is free again
    assert client.get("/get").json == {"x": "after"}


def test_a_locked_session_is_not_mistaken_for_a_broken_one(lock_app: Flask) -> None:
    """A reader that times out waiting must not start a fresh session over the user's.

    In WAL mode a reader waits only for a process that holds the file exclusively
    (another tool, or a crashed writer's recovery): that is what the lock holder does.
    """
    client, path = first_session(lock_app)
    cookie = client.get_cookie("session")
    assert cookie is not None
    with lock_held(path, "PRAGMA locking_mode=EXCLUSIVE; SELECT * FROM meta"):
        response = client.get("/get")
    assert response.status_code == 409
    assert response.json == {"error": SessionLockTimeout.__name__, "where": "view"}
    assert "Set-Cookie" not in response.headers
    assert session_files(path.parent) == [path.name]
    assert client.get("/get").json == {"x": "old"}


class Choreography:
    """Two requests of one session on a real threaded server, interleaved by events."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.first_read = threading.Event()
        self.second_done = threading.Event()
        self.pool = ThreadPoolExecutor(2)

    def pause(self) -> None:
        """Called by the first request's view after it read: wait for the second one."""
        self.first_read.set()
        assert self.second_done.wait(WAIT)

    def run(
        self, base: str, first: str, second: str, cookie: str
    ) -> tuple[requests.Response, requests.Response]:
        headers = {"Cookie": f"session={cookie}"}
        pending: Future[requests.Response] = self.pool.submit(
            requests.post, f"{base}{first}", headers=headers, timeout=WAIT
        )
        assert self.first_read.wait(WAIT)
        try:
            done = requests.post(f"{base}{second}", headers=headers, timeout=WAIT)
        finally:
            self.second_done.set()
        return pending.result(), done


def strict_app(make_app: Callable[..., Flask], strict: bool) -> tuple[Flask, Choreography]:
    app = make_app(strict=strict)
    app.config["TESTING"] = False
    handle_session_errors(app)
    steps = Choreography(app)

    @app.post("/start")
    def start() -> str:
        session["x"] = session["y"] = "start"
        return "ok"

    @app.post("/slow/<key>")
    def slow(key: str) -> str:
        session[key] = session[key] + "+slow"  # read, wait for the other request, write
        steps.pause()
        return "ok"

    @app.post("/fast/<key>")
    def fast(key: str) -> str:
        session[key] = "fast"
        return "ok"

    @app.get("/get")
    def get() -> Any:
        return jsonify(dict(session))

    return app, steps


def start_session(base: str) -> str:
    cookie = cookie_of(requests.post(f"{base}/start", timeout=WAIT))
    assert cookie
    return cookie


def dump(base: str, cookie: str) -> Any:
    return requests.get(f"{base}/get", headers={"Cookie": f"session={cookie}"}, timeout=WAIT).json()


@pytest.mark.parametrize("strict", [True, False])
def test_strict_mode_turns_a_lost_update_into_a_conflict(
    make_app: Callable[..., Flask], strict: bool
) -> None:
    app, steps = strict_app(make_app, strict)
    with threaded_server(app) as base:
        cookie = start_session(base)
        slow, fast = steps.run(base, "/slow/x", "/fast/x", cookie)
        assert fast.status_code == 200
        if strict:
            assert slow.status_code == 409
            assert slow.json() == {"error": SessionConflictError.__name__, "where": "save"}
            assert dump(base, cookie) == {"x": "fast", "y": "start"}
        else:  # the control: without strict mode the slow request silently wins
            assert slow.status_code == 200
            assert dump(base, cookie) == {"x": "start+slow", "y": "start"}


def test_strict_mode_allows_different_keys(make_app: Callable[..., Flask]) -> None:
    app, steps = strict_app(make_app, strict=True)
    with threaded_server(app) as base:
        cookie = start_session(base)
        slow, fast = steps.run(base, "/slow/y", "/fast/x", cookie)
        assert (slow.status_code, fast.status_code) == (200, 200)
        assert dump(base, cookie) == {"x": "fast", "y": "start+slow"}


def test_regenerate_while_an_old_id_request_is_in_flight(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    app = make_app()
    steps = Choreography(app)

    @app.post("/start")
    def start() -> str:
        session["cart"] = ["apple"]
        return "ok"

    @app.post("/slow")
    def slow() -> str:
        session["cart"].append("late")  # read with the old id; written after the login
        steps.pause()
        session["late"] = True
        return "ok"

    @app.post("/login")
    def login() -> str:
        session.regenerate()
        session["user"] = "alice"
        return "ok"

    @app.post("/write")
    def write() -> str:
        session["late"] = True
        return "ok"

    @app.get("/get")
    def get() -> Any:
        return jsonify(dict(session))

    with threaded_server(app) as base:
        old = start_session(base)
        slow, login = steps.run(base, "/slow", "/login", old)
        new = cookie_of(login)
        assert new and new != old
        assert slow.status_code == 200
        assert cookie_of(slow) is None  # the in-flight request must not undo the login
        assert dump(base, new) == {"cart": ["apple"], "user": "alice"}
        # The old id is a tombstone: it serves nothing, takes no writes, gets no new file.
        assert dump(base, old) == {}
        late = requests.post(f"{base}/write", headers={"Cookie": f"session={old}"}, timeout=WAIT)
        assert (late.status_code, cookie_of(late)) == (200, None)
        assert dump(base, old) == {}
    files = {f"{cookie.rpartition('.')[0]}.session" for cookie in (old, new)}
    assert set(session_files(session_dir)) == files  # the tombstone and the new session


@pytest.mark.parametrize("then_atomic", [False, True])
def test_logout_while_an_old_request_is_in_flight(
    make_app: Callable[..., Flask], session_dir: Path, then_atomic: bool
) -> None:
    """A request that read the session before a concurrent logout (``clear()``) must not
    carry what it read into a new session: that would undo the logout. The same when
    it only notices at an ``atomic()`` block after the logout."""
    app = make_app()
    steps = Choreography(app)

    @app.post("/start")
    def start() -> str:
        session["user"] = {"name": "alice", "seen": 0}
        return "ok"

    @app.post("/slow")
    def slow() -> str:
        session["user"]["seen"] += 1  # a nested change: "user" is saved again at the end
        steps.pause()
        if then_atomic:
            with session.atomic():
                session["n"] = session.get("n", 0) + 1
        return "ok"

    @app.post("/logout")
    def logout() -> str:
        session.clear()
        return "ok"

    with threaded_server(app) as base:
        cookie = start_session(base)
        slow, logout = steps.run(base, "/slow", "/logout", cookie)
    assert (slow.status_code, logout.status_code) == (200, 200)
    assert cookie_of(logout) == ""
    assert cookie_of(slow) is None  # no new session, and no cookie over the logout's
    assert session_files(session_dir) == []


def test_a_due_refresh_that_cannot_get_the_lock_is_skipped(
    make_app: Callable[..., Flask],
) -> None:
    """A read-only request whose expiry refresh is due, while another process holds the
    lock past ``lock_timeout``: the request still answers 200 with the data, and the
    refresh is left to a later request instead of failing this one.
    """
    app = make_app(lock_timeout=0.3, refresh_fraction=0.0)  # every read is due a refresh
    app.config["TESTING"] = False

    @app.post("/set")
    def set_() -> str:
        session["x"] = "kept"
        return "ok"

    @app.get("/get")
    def get() -> Any:
        return jsonify(x=session.get("x"))

    client, path = first_session(app, "/set")

    def stored_expiry() -> float:
        conn = apsw.Connection(str(path))
        try:
            return float(conn.execute("SELECT expires_at FROM meta").fetchall()[0][0])
        finally:
            conn.close()

    before = stored_expiry()
    with lock_held(path, "BEGIN IMMEDIATE"):
        response = client.get("/get")
    assert (response.status_code, response.json) == (200, {"x": "kept"})
    assert stored_expiry() == before  # skipped, not half-done
    client.get("/get")
    assert stored_expiry() > before  # the next read, with the lock free, refreshes
