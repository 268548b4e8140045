"""Concurrent requests of one session that change different keys all persist,
across threads and across processes, and no lock is held across a request.

Each writer reads the session, then waits at a barrier until every other writer has
read it too, and only then changes its own key: a whole-blob store would keep one
writer's view and lose the rest.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.synchronize import Barrier as ProcessBarrier
from pathlib import Path

from core_helpers import cookie_value, sid_of, stored_rows
from flask import Flask, session

from sqlite_session import SqliteSessionInterface

SECRET = "concurrency secret"
WRITERS = 4
ROUNDS = 5


def writer_app(session_dir: Path, barrier: threading.Barrier | ProcessBarrier) -> Flask:
    """An app whose /write/<key> reads the session, meets the others, then writes."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True)
    app.session_interface = SqliteSessionInterface(session_dir)

    @app.get("/seed")
    def seed() -> str:
        session["seed"] = 0
        return ""

    @app.get("/write/<key>")
    def write(key: str) -> str:
        seen = len(session)  # everyone reads the same state first
        barrier.wait(timeout=20)
        session[key] = seen
        session.setdefault("log", []).append(key)  # and all touch one shared key too
        return ""

    return app


def seed_session(session_dir: Path) -> str:
    client = writer_app(session_dir, threading.Barrier(1)).test_client()
    client.get("/seed")
    cookie = cookie_value(client)
    assert cookie
    return cookie


def run_writer(session_dir: Path, cookie: str, name: str, barrier: ProcessBarrier) -> None:
    """One process: its own app on the same directory, the same signed cookie."""
    client = writer_app(session_dir, barrier).test_client()
    client.set_cookie("session", cookie)
    for round_ in range(ROUNDS):
        response = client.get(f"/write/{name}-{round_}")
        if response.status_code != 200:
            raise SystemExit(f"{name}: unexpected response {response.status_code}")


def expected_keys() -> set[str]:
    return {f"w{n}-{r}" for n in range(WRITERS) for r in range(ROUNDS)} | {"seed", "log"}


def test_processes_writing_different_keys_lose_nothing(session_dir: Path) -> None:
    cookie = seed_session(session_dir)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WRITERS)
    procs = [
        ctx.Process(target=run_writer, args=(session_dir, cookie, f"w{n}", barrier))
        for n in range(WRITERS)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0] * WRITERS
    rows = stored_rows(session_dir, cookie.rpartition(".")[0])
    assert set(rows) == expected_keys()


def test_threads_writing_different_keys_lose_nothing(session_dir: Path) -> None:
    cookie = seed_session(session_dir)
    barrier = threading.Barrier(WRITERS)
    app = writer_app(session_dir, barrier)
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            client = app.test_client()
            client.set_cookie("session", cookie)
            for round_ in range(ROUNDS):
                assert client.get(f"/write/{name}-{round_}").status_code == 200
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(f"w{n}",)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert set(stored_rows(session_dir, cookie.rpartition(".")[0])) == expected_keys()


def test_two_requests_of_one_session_run_at_the_same_time(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    app = make_app()
    inside = threading.Event()
    release = threading.Event()

    @app.get("/seed")
    def seed() -> str:
        session["seed"] = 1
        return ""

    @app.get("/slow")
    def slow() -> str:
        session["slow"] = session["seed"] + 1  # has read and written before blocking
        inside.set()
        assert release.wait(timeout=20)
        return ""

    @app.get("/fast")
    def fast() -> str:
        session["fast"] = session["seed"] + 2
        return ""

    first = app.test_client()
    first.get("/seed")
    cookie = cookie_value(first)
    assert cookie
    outcome: list[int] = []
    blocked = threading.Thread(target=lambda: outcome.append(first.get("/slow").status_code))
    blocked.start()
    try:
        assert inside.wait(timeout=20)
        second = app.test_client()
        second.set_cookie("session", cookie)
        # completes while the first request of the same session is still in its view
        assert second.get("/fast").status_code == 200
        assert not release.is_set() and blocked.is_alive()
        assert set(stored_rows(session_dir, sid_of(second))) == {"seed", "fast"}
    finally:
        release.set()
        blocked.join(timeout=20)
    assert outcome == [200]
    rows = stored_rows(session_dir, sid_of(first))
    assert rows == {"seed": b"1", "slow": b"2", "fast": b"3"}
