"""Real servers for the tests: free ports on 127.0.0.1, start, wait until serving, stop by PID.

gunicorn runs in its own processes (the deployment recipe's app, or the stress app of
the reliability tests); a threaded werkzeug server runs in this process when a test
must choreograph two requests.
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

import requests
from conftest import ROOT
from flask import Flask
from werkzeug.serving import make_server

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
