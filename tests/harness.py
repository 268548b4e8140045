"""Harness of the reliability tests: real HTTP servers and the app-side error handling.

Servers: gunicorn in its own processes, or a threaded werkzeug server in this process
when a test must choreograph two requests. Both listen on 127.0.0.1 on a free port and
are stopped by the test that started them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from flask import Flask, jsonify
from werkzeug.exceptions import InternalServerError
from werkzeug.serving import make_server

from sqlite_session import SessionError

TESTS = Path(__file__).resolve().parent
SECRET_KEY = "reliability tests secret"


def free_port() -> int:
    """A TCP port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None = None, limit: float = 30.0) -> None:
    """Poll ``url`` until it answers 200; fail early if the server process died."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or workers still booting
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} not ready after {limit} s")


@contextmanager
def gunicorn(session_dir: Path, *, workers: int = 3, threads: int = 4, **env: str) -> Iterator[str]:
    """Run ``stress_app`` under gunicorn (gthread workers); yield its base URL.

    ``env`` reaches the app as environment variables (see :mod:`stress_app`). The
    server is stopped by its PID (SIGTERM, then SIGKILL) whatever happens in the block.
    """
    port = free_port()
    environ = {
        **os.environ,
        "SESSION_DIR": str(session_dir),
        "SECRET_KEY": SECRET_KEY,
        **env,
    }
    command = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
        "--worker-class", "gthread",
        "--threads", str(threads),
        "--chdir", str(TESTS),
        "--log-level", "warning",
        "--graceful-timeout", "5",
        "stress_app:create_app()",
    ]  # fmt: skip
    proc = subprocess.Popen(command, env=environ)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/health", proc)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
