"""A flood of cookieless visitors never locks established users out.

A real gunicorn (2 workers, threads) serves sessions on a 4 MiB tmpfs with the default
options but a short ``anonymous_lifetime`` (so that the flood's sessions have expired
when the sweep runs). Cookieless writing requests, ten times as many as the tmpfs holds
sessions, arrive while a few users log in, fill their carts, log out and log back in.
No 5xx for anyone, no lost cart, every login and logout answered, the filesystem never
full (sampled throughout); then ``sqlite-session sweep PATH`` with its defaults exits 0
and frees the flood's space.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from servers import stress_gunicorn
from tmpfs import mounted_tmpfs

TMPFS_BYTES = 4 * 1024 * 1024
SESSION_BYTES = 4096  # one tmpfs page per small session file
CAPACITY = TMPFS_BYTES // SESSION_BYTES
FLOOD_REQUESTS = 10 * CAPACITY
FLOODERS = 4
USERS = 3
ITEMS_PER_VISIT = 5
ANONYMOUS_LIFETIME = 3.0
DEADLINE = 60.0  # seconds the flood may take; the test stops it there
CONSOLE_SCRIPT = str(Path(sys.executable).with_name("sqlite-session"))


@pytest.fixture
def session_dir(tmp_path: Path) -> Iterator[Path]:
    """The session directory: the root of a fresh 4 MiB tmpfs (mode 0700)."""
    with mounted_tmpfs(tmp_path / "mnt", f"size={TMPFS_BYTES},mode=0700") as mount_point:
        yield mount_point


class Tally:
    """What the clients saw, shared by their threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: dict[str, dict[int, int]] = {}
        self.problems: list[str] = []
        self.flood_sent = 0
        self.logins = self.logouts = 0

    def status(self, who: str, status: int) -> None:
        with self.lock:
            counts = self.statuses.setdefault(who, {})
            counts[status] = counts.get(status, 0) + 1

    def problem(self, what: str) -> None:
        with self.lock:
            self.problems.append(what)


def flood(base: str, tally: Tally, quota: int, stop: threading.Event) -> None:
    """``quota`` cookieless requests that each store a key (a CSRF token), kept alive."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    body = "set=" + json.dumps({"csrf": "x" * 32})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    try:
        for _ in range(quota):
            if stop.is_set():
                return
            conn.request("POST", "/kv", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            tally.status("flood", response.status)
            with tally.lock:
                tally.flood_sent += 1
    finally:
        conn.close()


def user(base: str, tally: Tally, name: str, stop: threading.Event) -> None:
    """Log in, fill a cart, check it, log out; again until the flood is over."""
    while not stop.is_set():
        client = requests.Session()  # a browser: it keeps the cookie it is given
        login = client.post(f"{base}/login", timeout=30)
        tally.status("user", login.status_code)
        if login.status_code != 200 or "session" not in client.cookies:
            tally.problem(f"{name}: login answered {login.status_code} without a cookie")
            return
        with tally.lock:
            tally.logins += 1
        cart: list[str] = []
        for item in range(ITEMS_PER_VISIT):
            response = client.post(
                f"{base}/kv",
                data={"read": "cart", "set": json.dumps({"cart": [*cart, f"{name}-{item}"]})},
                timeout=30,
            )
            tally.status("user", response.status_code)
            seen = response.json()["seen"]["cart"] if response.status_code == 200 else None
            if seen != (cart or None):
                tally.problem(f"{name}: cart {seen!r}, expected {cart!r} (session lost)")
                return
            cart.append(f"{name}-{item}")
        dump = client.get(f"{base}/dump", timeout=30)
        tally.status("user", dump.status_code)
        if dump.json().get("cart") != cart:
            tally.problem(f"{name}: cart {dump.json()!r} at the end, expected {cart!r}")
            return
        logout = client.post(f"{base}/clear", timeout=30)
        tally.status("user", logout.status_code)
        deleted = "session=;" in logout.headers.get("Set-Cookie", "")
        if logout.status_code != 200 or not deleted:
            tally.problem(f"{name}: logout answered {logout.status_code}, deleted={deleted}")
            return
        with tally.lock:
            tally.logouts += 1


def sample_free_space(directory: Path, low: list[int], stop: threading.Event) -> None:
    """Record the smallest free space of ``directory``'s filesystem, every few ms."""
    while not stop.is_set():
        st = os.statvfs(directory)
        low[0] = min(low[0], st.f_bavail * st.f_frsize)
        time.sleep(0.005)


def disk_used(directory: Path) -> int:
    st = os.statvfs(directory)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def test_a_flood_never_locks_established_users_out(session_dir: Path) -> None:
    tally = Tally()
    low = [TMPFS_BYTES]
    done, flood_over = threading.Event(), threading.Event()
    with stress_gunicorn(
        session_dir, workers=2, threads=4, ANONYMOUS_LIFETIME=str(ANONYMOUS_LIFETIME)
    ) as base:
        sampler = threading.Thread(target=sample_free_space, args=(session_dir, low, done))
        flooders = [
            threading.Thread(target=flood, args=(base, tally, FLOOD_REQUESTS // FLOODERS, done))
            for _ in range(FLOODERS)
        ]
        users = [
            threading.Thread(target=user, args=(base, tally, f"user{n}", flood_over))
            for n in range(USERS)
        ]
        for thread in [sampler, *flooders, *users]:
            thread.start()
        deadline = time.monotonic() + DEADLINE
        for thread in flooders:
            thread.join(max(0.0, deadline - time.monotonic()))
        timed_out = any(thread.is_alive() for thread in flooders)
        flood_over.set()
        for thread in users:
            thread.join(30)
        done.set()
        for thread in [sampler, *flooders]:
            thread.join(30)
        used_after_flood = disk_used(session_dir)

    print(
        f"\nflood: {tally.flood_sent} cookieless requests (tmpfs capacity {CAPACITY} sessions), "
        f"{tally.logins} logins, {tally.logouts} logouts, statuses {tally.statuses}, "
        f"least free {low[0]} bytes of {TMPFS_BYTES}"
    )
    assert not timed_out, f"the flood took over {DEADLINE} s ({tally.flood_sent} sent)"
    assert tally.flood_sent == FLOOD_REQUESTS // FLOODERS * FLOODERS
    assert tally.problems == []
    assert set(tally.statuses["flood"]) == {200}, tally.statuses
    assert set(tally.statuses["user"]) == {200}, tally.statuses
    assert tally.logins >= USERS and tally.logouts >= USERS
    assert low[0] > 0, "the session filesystem filled up"
    assert low[0] < TMPFS_BYTES // 10, "the flood never reached the reserve"

    time.sleep(ANONYMOUS_LIFETIME + 3)  # the flood's sessions expire (mirror and grace)
    result = subprocess.run(
        [CONSOLE_SCRIPT, "sweep", str(session_dir)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"sweep: {result.stdout.strip()}; used {used_after_flood} -> {disk_used(session_dir)}")
    assert disk_used(session_dir) < used_after_flood // 4, result.stdout
