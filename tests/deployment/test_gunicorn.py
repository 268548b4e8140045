"""Under a real server: gunicorn with several worker processes and threads, driven over
HTTP from many client threads at once.

Proves: no 5xx under contention, no lost key, no session visible to another client,
no file left behind by a cleared session, and an atomic read-modify-write that counts
exactly. The worst save time and the worst ``atomic()`` lock wait are printed (run with
``-s`` to see them); they are the figures quoted in the README.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from core_helpers import session_files
from servers import cookie_of, stress_gunicorn

CLIENTS = 200  # distinct browser sessions
BURST = 8  # requests of one session sent at the same moment, each writing its own key
SEQUENTIAL = 3  # then requests that overwrite one key in turn
INCREMENTS = 100


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    session_dir = tmp_path_factory.mktemp("gunicorn") / "sessions"
    with stress_gunicorn(session_dir, workers=3, threads=4) as base:
        yield base, session_dir


@dataclass
class Load:
    """What the clients observed: failures, the worst save time, the expected state."""

    base: str
    failures: list[str] = field(default_factory=list)
    worst_save: float = 0.0
    requests: int = 0
    expected: dict[int, dict[str, Any]] = field(default_factory=dict)
    cookies: dict[int, str] = field(default_factory=dict)
    cleared: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, path: str, cookie: str | None, **form: Any) -> requests.Response:
        headers = {"Cookie": f"session={cookie}"} if cookie else {}
        response = requests.post(f"{self.base}{path}", data=form, headers=headers, timeout=30)
        with self.lock:
            self.requests += 1
            self.worst_save = max(self.worst_save, float(response.headers.get("X-Save-Seconds", 0)))
            if response.status_code != 200:
                self.failures.append(f"{path}: {response.status_code} {response.text[:200]}")
        return response

    def write(self, client: int, cookie: str | None, values: dict[str, Any]) -> requests.Response:
        """Write ``values``; the response must show this client's own ``owner`` key."""
        response = self.post(path="/kv", cookie=cookie, set=json.dumps(values), read="owner")
        if response.status_code == 200 and cookie is not None:
            owner = response.json()["seen"]["owner"]
            if owner != client:
                with self.lock:
                    self.failures.append(f"client {client} saw owner {owner!r}")
        return response

    def client(self, client: int, burst: ThreadPoolExecutor) -> None:
        """One browser: create, a burst of parallel writes, sequential writes, maybe clear."""
        first = self.write(client, None, {"owner": client, "step": 0})
        cookie = cookie_of(first)
        if not cookie:
            with self.lock:
                self.failures.append(f"client {client}: no cookie on first save")
            return
        expected: dict[str, Any] = {"owner": client, "step": 0}
        parallel = [
            burst.submit(self.write, client, cookie, {f"b{i}": f"{client}-{i}"})
            for i in range(BURST)
        ]
        for i, future in enumerate(parallel):
            if future.result().status_code == 200:
                expected[f"b{i}"] = f"{client}-{i}"
        for step in range(1, SEQUENTIAL + 1):
            if self.write(client, cookie, {"step": step}).status_code == 200:
                expected["step"] = step
        if client % 4 == 0:
            response = self.post("/clear", cookie)
            if cookie_of(response) != "":
                with self.lock:
                    self.failures.append(f"client {client}: clear did not delete the cookie")
            expected = {}
            self.cleared.add(client)
        with self.lock:
            self.expected[client] = expected
            self.cookies[client] = cookie


def test_many_sessions_many_workers(server: tuple[str, Path]) -> None:
    base, session_dir = server
    load = Load(base)
    with ThreadPoolExecutor(8) as clients, ThreadPoolExecutor(12) as burst:
        list(clients.map(lambda c: load.client(c, burst), range(CLIENTS)))
    print(f"\n{load.requests} requests, worst save (lock wait included): {load.worst_save:.4f} s")
    assert load.failures == []
    assert len(load.expected) == CLIENTS
    for client, expected in load.expected.items():
        cookie = load.cookies[client]
        stored = requests.get(f"{base}/dump", headers={"Cookie": f"session={cookie}"}, timeout=30)
        assert stored.json() == expected, f"client {client}"
        sid = cookie.rpartition(".")[0]
        assert (session_dir / f"{sid}.session").exists() == (client not in load.cleared)
    # Exactly one file per live client: no request fell back to a spurious new session.
    assert len(session_files(session_dir)) == CLIENTS - len(load.cleared)
    # And nothing else: no temporary file, and no -wal/-shm but those of the live
    # sessions that the workers hold open (SQLite deletes them with the last connection).
    live = set(session_files(session_dir))
    others = [name for name in os.listdir(session_dir) if name not in live]
    assert all(name[:-4] in live and name[-4:] in ("-wal", "-shm") for name in others), others


def test_atomic_increments_count_exactly(server: tuple[str, Path]) -> None:
    base, _ = server
    load = Load(base)
    cookie = cookie_of(load.write(0, None, {"n": 0}))
    assert cookie
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: load.post("/incr", cookie), range(INCREMENTS)))
    assert load.failures == []
    worst_wait = max(r.json()["waited"] for r in responses)
    print(f"\n{INCREMENTS} atomic increments, worst lock wait in atomic(): {worst_wait:.4f} s")
    stored = requests.get(f"{base}/dump", headers={"Cookie": f"session={cookie}"}, timeout=30)
    assert stored.json()["n"] == INCREMENTS


def test_regenerate_among_concurrent_writers(server: tuple[str, Path]) -> None:
    """A login (``regenerate()``) in the middle of parallel writes of the same session,
    across processes: a write that was saved (its response re-sent the cookie: the writes
    make the session permanent, so each save moves its Expires) is in the new session;
    one that lost the race (no cookie) is discarded, never half-applied."""
    base, _ = server
    load = Load(base)
    old = cookie_of(load.write(0, None, {"owner": 0}))
    assert old
    with ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda i: load.write(0, old, {f"k{i}": i}), range(10)))
        racing = [  # no owner check: a request that lost the race sees an empty session
            pool.submit(load.post, "/kv", old, set=json.dumps({f"m{i}": i}), permanent="1")
            for i in range(24)
        ]
        login = load.post("/login", old)
        results = [future.result() for future in racing]
    assert load.failures == []
    new = cookie_of(login)
    assert new and new != old
    stored = requests.get(f"{base}/dump", headers={"Cookie": f"session={new}"}, timeout=30).json()
    saved = {f"m{i}" for i, response in enumerate(results) if cookie_of(response) == old}
    assert all(cookie_of(response) in (old, None) for response in results)
    expected = {"owner": 0, "user": "alice", **{f"k{i}": i for i in range(10)}}
    expected.update({key: int(key[1:]) for key in saved})
    if saved:  # as with Flask's session, dict(session) shows a permanent one's flag
        expected["_permanent"] = True
    assert stored == expected
    gone = requests.get(f"{base}/dump", headers={"Cookie": f"session={old}"}, timeout=30)
    assert gone.json() == {}
    print(f"\n{len(saved)} of {len(results)} racing writes saved before the login")
