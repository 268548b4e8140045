"""The sweeper under live traffic: sessions refreshed on the edge of their lifetime.

Several processes make real Flask requests (test clients in child processes) that keep
using sessions with a 1 s lifetime and ``refresh_fraction=0``, each waiting 0.7-1.3 s
between two requests of a session, so about half the sessions expire just before their
next request and half are refreshed just in time; now and then a request logs out.
Half the clients keep no idle connections, so their sessions' files are closed between
requests and the sweeper removes them on their ``lstat`` alone; the others keep them
open, and the sweeper opens them. Meanwhile another process sweeps the directory in a
loop. Each client knows bounds on its sessions' stored expiry (a save or refresh happens
between the request's start and its end), and checks:

* no live session lost: a request that ended before the expiry's lower bound saw the
  session's data;
* no expired session served: a request that started after the expiry's upper bound
  did not see it;
* no session served after its logout: the old cookie, sent again, finds nothing;
* data never inconsistent (the counter is exactly the last one written), no exception,
  no 5xx.

Between the bounds (a request that overlaps the expiry) either outcome is correct.
"""

from __future__ import annotations

import json
import math
import os
import random
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, session
from flask.testing import FlaskClient

from sqlite_session import SqliteSessionInterface
from sqlite_session.janitor import sweep

LIFETIME = 1.0
RUN_SECONDS = 10.0
CLIENTS = 4
SESSIONS_PER_CLIENT = 8
COOKIE = "session"


def build_app(session_dir: str, connection_cache_size: int) -> Flask:
    app = Flask("race")
    app.config.update(
        SECRET_KEY="race secret",
        TESTING=True,  # exceptions propagate to the test client, where they are counted
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=LIFETIME),
    )
    app.session_interface = SqliteSessionInterface(
        session_dir, refresh_fraction=0.0, connection_cache_size=connection_cache_size
    )

    @app.get("/tick")
    def tick() -> dict[str, Any]:
        owner, n = session.get("owner"), session.get("n")
        if owner is None or n is None:
            new_owner = secrets.token_hex(8)
            session["owner"], session["n"] = new_owner, 0
        else:
            new_owner = owner
            session["n"] = n + 1
        return {"owner": owner, "n": n, "new_owner": new_owner}

    @app.get("/peek")
    def peek() -> dict[str, Any]:
        return {"owner": session.get("owner"), "n": session.get("n")}

    @app.get("/logout")
    def logout() -> dict[str, Any]:
        seen = {"owner": session.get("owner"), "n": session.get("n")}
        session.clear()
        return seen

    return app


@dataclass
class Tracked:
    """What a client knows of one of its sessions."""

    owner: str | None = None
    n: int | None = None
    low: float = 0.0  # the stored expiry is at least this...
    high: float = math.inf  # ... and at most this
    due: float = 0.0  # when to make the next request
    # The last write overlapped the expiry: it was kept, or discarded with the session
    # (a save that finds its session expired and swept writes nothing and keeps the
    # cookie as it was), so the next request may find the session gone.
    uncertain: bool = False


class Checker:
    """Makes the requests of one client process and checks every response."""

    def __init__(self, app: Flask, rng: random.Random) -> None:
        self.app = app
        self.rng = rng
        self.counts = {"requests": 0, "continued": 0, "expired": 0, "torn": 0, "logouts": 0}
        self.violations: list[str] = []

    def request(self, client: FlaskClient, tracked: Tracked) -> None:
        path = self.rng.choices(["/tick", "/peek", "/logout"], weights=[10, 10, 1])[0]
        before = client.get_cookie(COOKIE)
        t0 = time.time()
        try:
            response = client.get(path)
        except Exception as exc:  # counted, then reported by the test
            self.violations.append(f"exception {exc!r}")
            return
        t1 = time.time()
        self.counts["requests"] += 1
        if response.status_code != 200:
            self.violations.append(f"{path}: status {response.status_code}")
            return
        data = response.get_json()
        after = client.get_cookie(COOKIE)
        continued = self.check(path, data, tracked, t0, t1)
        same_cookie = after is not None and before is not None and after.value == before.value
        self.update(path, data, tracked, t0, t1, continued, same_cookie, after is None)
        if path == "/logout" and before is not None:
            self.replay_after_logout(client, before.value)

    def replay_after_logout(self, client: FlaskClient, old_cookie: str) -> None:
        """The cookie a logout replaced, sent again, must lead to no session."""
        self.counts["logouts"] += 1
        client.set_cookie(COOKIE, old_cookie)
        seen = client.get("/peek").get_json()
        client.delete_cookie(COOKIE)
        if seen["owner"] is not None:
            self.violations.append(f"session {seen['owner']} served after its logout")

    def check(
        self, path: str, data: dict[str, Any], tracked: Tracked, t0: float, t1: float
    ) -> bool:
        """Judge what the request saw; True if it saw the session's data unchanged."""
        seen_owner, seen_n = data["owner"], data["n"]
        if tracked.owner is not None and seen_owner == tracked.owner:
            if seen_n == tracked.n:
                self.counts["continued"] += 1
                if t0 > tracked.high:
                    self.violations.append(
                        f"{path}: session served {t0 - tracked.high:.3f} s after expiry"
                    )
                return True
            if seen_n is None and t1 >= tracked.low:
                self.counts["torn"] += 1  # expired (and swept) between its two reads
                return False
            self.violations.append(f"{path}: counter {seen_n}, last written {tracked.n}")
        elif seen_owner is None:
            if tracked.owner is not None:
                if t1 < tracked.low and not tracked.uncertain:
                    self.violations.append(
                        f"{path}: live session lost {tracked.low - t1:.3f} s early"
                    )
                else:
                    self.counts["expired"] += 1
        else:
            self.violations.append(f"{path}: data of another session {seen_owner}")
        return False

    @staticmethod
    def update(
        path: str,
        data: dict[str, Any],
        tracked: Tracked,
        t0: float,
        t1: float,
        continued: bool,
        same_cookie: bool,
        cookie_deleted: bool,
    ) -> None:
        """What the client now knows of the stored session."""
        bounds = (t0 + LIFETIME, t1 + LIFETIME)
        overlapped = t1 >= tracked.low  # the session may have expired during the request
        tracked.uncertain = False
        if cookie_deleted:
            tracked.owner, tracked.n = None, None
        elif path == "/tick" and data["new_owner"] != data["owner"]:
            tracked.owner, tracked.n = data["new_owner"], 0  # a new session was started
            tracked.low, tracked.high = bounds
        elif path == "/tick" and same_cookie:
            tracked.n = data["n"] + 1  # written into the same session ...
            tracked.low, tracked.high = bounds
            tracked.uncertain = overlapped  # ... unless that session expired meanwhile
        elif path != "/tick" and continued:
            tracked.low, tracked.high = bounds  # refreshed (a failed refresh deletes the cookie)
        else:
            tracked.owner, tracked.n = None, None  # expired during the save: a new id


def client_main(session_dir: str, start: float, seed: int) -> None:
    """One client process: several sessions, each used every 0.7-1.3 lifetimes."""
    rng = random.Random(seed)
    app = build_app(session_dir, connection_cache_size=0 if seed % 2 else 128)
    checker = Checker(app, rng)
    sessions = [
        (app.test_client(), Tracked(due=start + rng.random())) for _ in range(SESSIONS_PER_CLIENT)
    ]
    while True:
        client, tracked = min(sessions, key=lambda pair: pair[1].due)
        if tracked.due > start + RUN_SECONDS:
            break
        time.sleep(max(0.0, tracked.due - time.time()))
        checker.request(client, tracked)
        tracked.due = time.time() + rng.uniform(0.7, 1.3) * LIFETIME
    print(json.dumps({"counts": checker.counts, "violations": checker.violations}))


def sweeper_main(session_dir: str, start: float) -> None:
    """Sweep in a loop for the duration of the run."""
    totals = {"sweeps": 0, "removed": 0, "removed_unopened": 0, "busy": 0, "broken": 0, "errors": 0}
    time.sleep(max(0.0, start - time.time()))
    while time.time() < start + RUN_SECONDS:
        report = sweep(session_dir, lock_timeout=0.05)
        totals["sweeps"] += 1
        for key in totals.keys() - {"sweeps"}:
            totals[key] += getattr(report, key)
        time.sleep(0.005)
    print(json.dumps(totals))


def spawn(code: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    return subprocess.Popen(
        [sys.executable, "-c", f"import test_sweep_race as t; t.{code}"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_sweeper_under_live_traffic(session_dir: Path) -> None:
    session_dir.mkdir(mode=0o700)
    start = time.time() + 3.0  # time for the children to import Flask
    sweeper = spawn(f"sweeper_main({str(session_dir)!r}, {start!r})")
    clients = [
        spawn(f"client_main({str(session_dir)!r}, {start!r}, {seed})") for seed in range(CLIENTS)
    ]

    results = [json.loads(proc.communicate(timeout=60)[0]) for proc in clients]
    swept = json.loads(sweeper.communicate(timeout=60)[0])

    assert [proc.returncode for proc in (*clients, sweeper)] == [0] * (CLIENTS + 1)
    violations = [v for result in results for v in result["violations"]]
    assert violations == []
    counts = {key: sum(r["counts"][key] for r in results) for key in results[0]["counts"]}
    # The run exercised both sides of the edge, and the sweeper did remove sessions.
    assert counts["continued"] > 20 and counts["expired"] > 20, counts
    assert counts["logouts"] > 0, counts  # (about 1 request in 21 is a logout: at least one)
    assert swept["removed"] > 10 and swept["errors"] == swept["broken"] == 0, swept
    # Both ways were taken: on the lstat alone (idle files) and through SQLite (open ones).
    assert 5 < swept["removed_unopened"] < swept["removed"], swept
