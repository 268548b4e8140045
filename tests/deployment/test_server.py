"""Concurrent requests of one session that change different keys all persist, through
a real server: gunicorn workers (separate processes) serving them over HTTP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from servers import TESTS, free_port

WORKERS = 3


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """gunicorn with several sync workers on 127.0.0.1; stopped by its PID."""
    port = free_port()
    flag = tmp_path / "release"
    env = dict(
        os.environ,
        CORE_SESSION_DIR=str(tmp_path / "sessions"),
        CORE_SECRET_KEY="server secret",
        CORE_FLAG_FILE=str(flag),
    )
    gunicorn = Path(sys.executable).parent / "gunicorn"
    proc = subprocess.Popen(
        [
            str(gunicorn),
            "-w",
            str(WORKERS),
            "-b",
            f"127.0.0.1:{port}",
            "--chdir",
            str(TESTS),
            "--log-level",
            "warning",
            "core_server_app:create_app()",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # up to ~30 s on a loaded machine
            try:
                requests.get(f"{base}/dump", timeout=5)
                break
            except requests.RequestException:  # not listening yet, or workers still booting
                time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not start")
        yield base, flag
    finally:
        os.kill(proc.pid, signal.SIGINT)  # quick shutdown: the master stops its workers
        proc.wait(timeout=20)


def seeded_cookie(base: str) -> dict[str, str]:
    """The cookie of a new stored session."""
    seeder = requests.Session()
    seeder.get(f"{base}/seed", timeout=10)
    return {"session": str(seeder.cookies["session"])}


def test_concurrent_requests_across_worker_processes_lose_no_key(
    server: tuple[str, Path],
) -> None:
    base, _ = server
    cookie = seeded_cookie(base)
    keys = [f"k{i}" for i in range(12)]

    def write(key: str) -> str:
        response = requests.get(f"{base}/write/{key}", cookies=cookie, timeout=20)
        assert response.status_code == 200
        return response.text

    with ThreadPoolExecutor(max_workers=6) as pool:
        pids = set(pool.map(write, keys))
    assert len(pids) > 1  # served by more than one process
    stored = requests.get(f"{base}/dump", cookies=cookie, timeout=10).json()
    assert stored == sorted(["seed", *keys])


def test_a_request_of_the_session_completes_while_another_is_in_progress(
    server: tuple[str, Path],
) -> None:
    base, flag = server
    cookie = seeded_cookie(base)
    with ThreadPoolExecutor(max_workers=1) as pool:
        blocked = pool.submit(requests.get, f"{base}/block/a", cookies=cookie, timeout=30)
        inside = Path(str(flag) + ".inside")
        for _ in range(400):
            if inside.exists():
                break
            time.sleep(0.025)
        assert inside.exists()
        # another worker serves the same session while the first request is in its view
        assert requests.get(f"{base}/write/b", cookies=cookie, timeout=10).status_code == 200
        assert not blocked.done()
        flag.touch()
        assert blocked.result().status_code == 200
    stored = requests.get(f"{base}/dump", cookies=cookie, timeout=10).json()
    assert stored == ["a", "b", "seed"]
