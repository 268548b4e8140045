"""In-app sweeping: off by default, a background thread, one sweeper per directory."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from core_helpers import session_files
from flask import Flask

from sqlite_session import SqliteSessionInterface
from sqlite_session.ids import new_session_id
from sqlite_session.janitor import BackgroundSweeper, sweep_lock
from sqlite_session.store import Changes

THREAD_NAME = "sqlite-session-sweeper"


def add_sessions(interface: SqliteSessionInterface, expires_in: float, count: int) -> set[str]:
    names = set()
    for _ in range(count):
        sid = new_session_id()
        changes = Changes(upserts={"k": b"1"}, expires_at=time.time() + expires_in)
        interface.store.create(sid, changes)
        names.add(sid + ".session")
    return names


class Collect(logging.Handler):
    """Keeps the log records it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def wait_for(condition: Callable[[], bool], limit: float = 20.0) -> bool:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def sweeping_app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    app = make_app(sweep_every=0.2)

    @app.get("/")
    def index() -> str:
        return "no session touched"

    yield app
    interface = app.session_interface
    assert isinstance(interface, SqliteSessionInterface) and interface.sweeper is not None
    interface.sweeper.stop()


def test_off_by_default(app: Flask, session_dir: Path) -> None:
    interface = app.session_interface
    assert isinstance(interface, SqliteSessionInterface)
    add_sessions(interface, -5, 3)

    app.test_client().get("/")

    assert interface.sweeper is None
    assert len(session_files(session_dir)) == 3
    assert not any(t.name == THREAD_NAME for t in threading.enumerate())


def test_sweeps_in_the_background(sweeping_app: Flask, session_dir: Path) -> None:
    interface = sweeping_app.session_interface
    assert isinstance(interface, SqliteSessionInterface)
    live = add_sessions(interface, 3600, 3)
    add_sessions(interface, -5, 4)

    sweeping_app.test_client().get("/")  # a request starts the thread; it does not sweep itself

    assert wait_for(lambda: set(session_files(session_dir)) == live)


def test_at_most_one_sweeper_per_directory_across_processes(session_dir: Path) -> None:
    interface = SqliteSessionInterface(session_dir)
    add_sessions(interface, -5, 2)
    sweeper = BackgroundSweeper(str(session_dir), 0.01)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_SWEEP_LOCK, str(session_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        assert sweeper.sweep_once() is None
        assert len(session_files(session_dir)) == 2
    finally:
        holder.communicate("done\n", timeout=30)
    report = sweeper.sweep_once()
    assert report is not None and report.removed == 2


HOLD_SWEEP_LOCK = """
import sys
from sqlite_session.janitor import sweep_lock
with sweep_lock(sys.argv[1]) as lock:
    assert lock is not None
    print("holding", flush=True)
    sys.stdin.readline()
"""


def test_interval_shared_between_processes(session_dir: Path) -> None:
    """A sweep by anyone (here the CLI) counts: the next one waits for the interval."""
    interface = SqliteSessionInterface(session_dir)
    subprocess.run([sys.executable, "-m", "sqlite_session", "sweep", str(session_dir)], check=True)
    add_sessions(interface, -5, 1)
    sweeper = BackgroundSweeper(str(session_dir), 3600)

    assert sweeper.sweep_once() is None
    with sweep_lock(session_dir) as lock:
        assert lock is not None
        lock.record_sweep(0.0)
    report = sweeper.sweep_once()
    assert report is not None and report.removed == 1


def test_a_forked_worker_starts_its_own_thread(sweeping_app: Flask, session_dir: Path) -> None:
    """gunicorn forks workers: a thread does not survive fork, the worker needs its own."""
    client = sweeping_app.test_client()
    client.get("/")
    assert any(t.name == THREAD_NAME for t in threading.enumerate())
    interface = sweeping_app.session_interface
    assert isinstance(interface, SqliteSessionInterface) and interface.sweeper is not None

    pid = os.fork()
    if pid == 0:  # the worker
        status = 1
        try:
            before = any(t.name == THREAD_NAME for t in threading.enumerate())
            handler = Collect()
            sweeps = handler.records
            logging.getLogger("sqlite_session").addHandler(handler)
            logging.getLogger("sqlite_session").setLevel(logging.INFO)
            client.get("/")
            after = any(t.name == THREAD_NAME for t in threading.enumerate())
            swept = wait_for(
                lambda: any(
                    r.threadName == THREAD_NAME
                    and r.process == os.getpid()
                    and r.getMessage().startswith("sweep of")
                    for r in sweeps
                )
            )
            status = 0 if (not before and after and swept) else 1
        finally:
            os._exit(status)
    # The parent's thread would otherwise compete for the sweeps (and often win them).
    interface.sweeper.stop()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_stop_is_final(sweeping_app: Flask) -> None:
    interface = sweeping_app.session_interface
    assert isinstance(interface, SqliteSessionInterface) and interface.sweeper is not None
    client = sweeping_app.test_client()
    client.get("/")
    assert any(t.name == THREAD_NAME for t in threading.enumerate())

    interface.sweeper.stop()
    client.get("/")

    assert wait_for(lambda: not any(t.name == THREAD_NAME for t in threading.enumerate()))


GUNICORN_APP = """
import os
from flask import Flask
from sqlite_session import SqliteSessionInterface

app = Flask(__name__)
app.secret_key = "gunicorn test"
app.session_interface = SqliteSessionInterface(os.environ["SESSION_DIR"], sweep_every=0.2)


@app.get("/")
def index():
    return "ok"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_under_gunicorn_with_preload(session_dir: Path, tmp_path: Path) -> None:
    """The real deployment: the interface is built in the arbiter, then workers fork."""
    interface = SqliteSessionInterface(session_dir)
    live = add_sessions(interface, 3600, 3)
    add_sessions(interface, -5, 5)
    (tmp_path / "gunicorn_app.py").write_text(GUNICORN_APP)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--preload",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--chdir",
            str(tmp_path),
            "gunicorn_app:app",
        ],
        env={**os.environ, "SESSION_DIR": str(session_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def serving() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/", timeout=2).text == "ok"
            except requests.ConnectionError:
                return False

        assert wait_for(serving)
        assert wait_for(lambda: set(session_files(session_dir)) == live)
    finally:
        server.terminate()
        server.wait(timeout=30)
