"""Real servers for the tests, and the app-side handling of session errors.

Servers: free ports on 127.0.0.1, start, wait until serving, stop by PID. gunicorn runs
in its own processes (the deployment recipe's app, or :mod:`stress_app`); a threaded
werkzeug server runs in this process when a test must choreograph two requests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from core_helpers import ROOT
from flask import Flask, jsonify
from werkzeug.exceptions import InternalServerError
from werkzeug.serving import make_server

from sqlite_session import SessionError, SqliteSessionInterface

TESTS = Path(__file__).resolve().parent
START_DEADLINE = 30.0  # seconds a server may take to answer before the test gives up
SECRET_KEY = "reliability tests secret"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(
    url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = START_DEADLINE
) -> None:
    """Poll ``url`` until it answers; fail with the server's log if it died or never did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:  # refused, reset, or a first response slow on a loaded machine
            time.sleep(0.1)
    raise RuntimeError(f"server did not answer {url}:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM by PID, then SIGKILL if it has not exited after 15 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running(
    argv: Sequence[str | os.PathLike[str]],
    health_url: str,
    log: Path,
    env: dict[str, str],
    start_deadline: float = START_DEADLINE,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (output to ``log``) until the block ends; yield once it answers
    (within ``start_deadline`` seconds)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
    try:
        wait_until_serving(health_url, process, log, start_deadline)
        yield process
    finally:
        stop(process)


def _gunicorn_argv(port: int, workers: int, threads: int, *options: str) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads),
        *options,
    ]  # fmt: skip


@contextmanager
def gunicorn(
    tmp: Path, port: int, env: dict[str, str], workers: int = 2
) -> Iterator[subprocess.Popen[bytes]]:
    """The deployment recipe's gunicorn command (deploy/wsgi.py) on 127.0.0.1:``port``."""
    argv = _gunicorn_argv(
        port, workers, 4, "--pythonpath", f"{ROOT / 'deploy'},{ROOT / 'scripts'}", "wsgi:app"
    )
    with running(argv, f"http://127.0.0.1:{port}/health", tmp / f"gunicorn-{port}.log", env) as p:
        yield p


@contextmanager
def stress_gunicorn(
    session_dir: Path, *, workers: int = 3, threads: int = 4, **env: str
) -> Iterator[str]:
    """Run ``stress_app`` under gunicorn (gthread workers); yield its base URL.

    ``env`` reaches the app as environment variables (see :mod:`stress_app`).
    """
    port = free_port()
    argv = _gunicorn_argv(
        port, workers, threads, "--chdir", str(TESTS), "--log-level", "warning",
        "--graceful-timeout", "5", "stress_app:create_app()",
    )  # fmt: skip
    environ = {"SESSION_DIR": str(session_dir), "SECRET_KEY": SECRET_KEY, **env}
    base = f"http://127.0.0.1:{port}"
    with running(argv, f"{base}/health", session_dir.parent / f"gunicorn-{port}.log", environ):
        yield base


@contextmanager
def threaded_server(app: Flask) -> Iterator[str]:
    """Serve ``app`` with werkzeug's threaded server in a background thread."""
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def cookie_of(response: requests.Response, name: str = "session") -> str | None:
    """The value a response sets for cookie ``name``: '' if it deletes it, None if untouched."""
    for header in response.raw.headers.getlist("Set-Cookie"):
        key, _, rest = header.partition("=")
        if key == name:
            value = rest.split(";", 1)[0]
            return "" if "Max-Age=0" in header or "Expires=Thu, 01 Jan 1970" in header else value
    return None


def handle_session_errors(app: Flask) -> None:
    """The documented way to turn session errors into a response of the app's choice.

    Errors raised in a view (``atomic()``) reach ``errorhandler(SessionError)``; errors
    raised by the end-of-request save reach Flask's 500 handler, wrapped.
    """

    @app.errorhandler(SessionError)
    def in_view(exc: SessionError) -> tuple[Any, int]:
        return jsonify(error=type(exc).__name__, where="view"), 409

    @app.errorhandler(InternalServerError)
    def at_save(exc: InternalServerError) -> tuple[Any, int]:
        original = exc.original_exception
        name = type(original).__name__ if isinstance(original, SessionError) else "other"
        return jsonify(error=name, where="save"), 409 if name != "other" else 500


def app_answering_session_errors(directory: str | os.PathLike[str]) -> Flask:
    """An app on ``directory`` that answers session errors through :func:`handle_session_errors`.

    Not in TESTING mode: errors reach the handlers instead of the test client.
    """
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test secret")
    app.session_interface = SqliteSessionInterface(directory)
    handle_session_errors(app)
    return app
