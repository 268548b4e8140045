"""Real servers for the tests: free ports on 127.0.0.1, start, wait until serving, stop by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from conftest import ROOT

START_DEADLINE = 30.0  # seconds a server may take to answer before the test gives up


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``url`` until it answers; fail with the server's log if it died or never did."""
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
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
    argv: Sequence[str | os.PathLike[str]], health_url: str, log: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (output to ``log``) until the block ends; yield once it answers."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
    try:
        wait_until_serving(health_url, process, log)
        yield process
    finally:
        stop(process)


@contextmanager
def gunicorn(
    tmp: Path, port: int, env: dict[str, str], workers: int = 2
) -> Iterator[subprocess.Popen[bytes]]:
    """The deployment recipe's gunicorn command (deploy/wsgi.py) on 127.0.0.1:``port``."""
    argv = [
        sys.executable, "-m", "gunicorn",
        "--pythonpath", f"{ROOT / 'deploy'},{ROOT / 'scripts'}",
        "--workers", str(workers), "--worker-class", "gthread", "--threads", "4",
        "--bind", f"127.0.0.1:{port}",
        "wsgi:app",
    ]  # fmt: skip
    with running(argv, f"http://127.0.0.1:{port}/health", tmp / f"gunicorn-{port}.log", env) as p:
        yield p
