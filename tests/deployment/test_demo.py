"""``./scripts/demo``: the demo app under gunicorn on several workers, used over HTTP.

The script itself runs, as a developer would start it, on a free port of 127.0.0.1 with
its sessions in the test's tmp dir, and is stopped by PID (SIGTERM to gunicorn's master,
which the script becomes). Its first run in a virtualenv installs the demo group there.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import requests
from core_helpers import ROOT, session_files, stored_sizes
from servers import free_port, running

DEMO = ROOT / "scripts" / "demo"
WORKERS = 3
SETUP_DEADLINE = 300.0  # seconds: a first run installs the demo group into the venv
ROUNDS = 40  # additions per tab, each at the same moment as the other tab's


class Demo(NamedTuple):
    url: str
    sessions: Path
    log: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    if sys.prefix == sys.base_prefix:  # the script would install into this Python itself
        pytest.skip("./scripts/demo installs into a virtualenv: run the tests in one")
    tmp = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = {
        "PORT": str(port),
        "WORKERS": str(WORKERS),
        "SESSION_DIR": str(tmp / "sessions"),
        "SECRET_KEY": "demo test key",
        "VENV": sys.prefix,  # the virtualenv running these tests, whichever it is
    }
    url = f"http://127.0.0.1:{port}"
    log = tmp / "demo.log"
    with running([DEMO], f"{url}/health", log, env, start_deadline=SETUP_DEADLINE):
        yield Demo(url, tmp / "sessions", log)


def cart(page: str) -> list[str]:
    (items,) = re.findall(r'<ul id="cart">(.*?)</ul>', page, re.S)
    return [html.unescape(item) for item in re.findall(r"<li>(.*?)</li>", items)]


def rows(panel: str) -> list[tuple[str, int]]:
    found = re.findall(r'<tr><td>(.*?)</td><td class="num">(\d+)</td></tr>', panel)
    return sorted((html.unescape(key), int(size)) for key, size in found)


def file_path(panel: str) -> Path:
    (path,) = re.findall(r'<code id="path">(.*?)</code>', panel)
    return Path(html.unescape(path))


def test_says_what_it_starts_and_runs_several_workers(demo: Demo) -> None:
    port = demo.url.rsplit(":", 1)[1]
    log = demo.log.read_text()
    assert f"starting gunicorn with {WORKERS} workers on http://127.0.0.1:{port}/" in log
    deadline = time.monotonic() + 30
    while demo.log.read_text().count("Booting worker with pid") < WORKERS:
        assert time.monotonic() < deadline, demo.log.read_text()
        time.sleep(0.1)


def test_login_two_tabs_adding_at_once_rows_and_logout(demo: Demo) -> None:
    first_tab = requests.Session()
    page = first_tab.get(demo.url + "/").text
    assert cart(page) == ["(empty)"] and 'id="nofile"' in page
    assert not first_tab.cookies  # looking costs nothing: no session, no cookie

    page = first_tab.post(demo.url + "/login", {"username": "Ann"}).text
    assert "Logged in as <b>Ann</b>" in page and "Welcome, Ann!" in page
    second_tab = requests.Session()
    second_tab.cookies.update(first_tab.cookies)  # a second tab of the same browser

    start = threading.Barrier(2)
    failures: list[str] = []

    def add_items(tab: requests.Session, name: str) -> None:
        for i in range(ROUNDS):
            start.wait(timeout=30)
            response = tab.post(demo.url + "/cart", {"item": f"{name}{i}"}, allow_redirects=False)
            if response.status_code != 302:
                failures.append(f"{name}{i}: {response.status_code}")

    tabs = [
        threading.Thread(target=add_items, args=(first_tab, "a")),
        threading.Thread(target=add_items, args=(second_tab, "b")),
    ]
    for thread in tabs:
        thread.start()
    for thread in tabs:
        thread.join()
    assert failures == []

    page = second_tab.get(demo.url + "/").text
    expected = sorted(f"{name}{i}" for name in "ab" for i in range(ROUNDS))
    assert sorted(cart(page)) == expected  # every addition of both tabs persisted

    panel = first_tab.get(demo.url + "/session-file").text
    path = file_path(panel)
    assert path.parent == demo.sessions and session_files(demo.sessions) == [path.name]
    assert rows(panel) == stored_sizes(path) and [k for k, _ in rows(panel)] == ["cart", "user"]
    size = re.search(r'<span id="size">(\d+)</span>', panel)
    assert size is not None and int(size[1]) == path.stat().st_size

    page = first_tab.post(demo.url + "/logout").text
    assert "You are logged out." in page and "Logged in as" not in page
    assert cart(page) == ["(empty)"]
    assert not first_tab.cookies
    assert session_files(demo.sessions) == []


def test_demo_app_passes_mypy_strict() -> None:
    """It uses session.regenerate() and session.atomic() as a typed app would."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir=/dev/null",
         str(ROOT / "scripts" / "demo_app.py")],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
