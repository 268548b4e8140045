"""Measure what a disk session directory costs compared with a tmpfs one.

Each "request" is a real Flask request (test client, no network) on an existing session
that reads one key and appends to another (one read, one write transaction), the
pattern of a cart. A second phase measures new sessions (file created, renamed into
place) and logouts (file removed). The same workload runs on each directory given.

    .venv/bin/python scripts/bench_tmpfs_vs_disk.py                  # /dev/shm vs ./.bench-disk
    .venv/bin/python scripts/bench_tmpfs_vs_disk.py --disk /var/lib/myapp/sessions

Prints the filesystem type of each directory, then median and 99th percentile per
request in microseconds, and the bytes sent to a block device per request (from
/proc/self/io; 0 on a tmpfs). It writes only under the directories it creates and
removes them afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

from flask import Flask, session

from sqlite_session import SqliteSessionInterface


def build_app(path: str) -> Flask:
    app = Flask(__name__)
    app.secret_key = "bench"
    app.session_interface = SqliteSessionInterface(path)

    @app.get("/login")
    def login() -> str:
        session["user"] = "someone"
        session["cart"] = []
        return "ok"

    @app.get("/add")
    def add() -> str:
        user = session["user"]
        session["cart"].append(len(session["cart"]))
        return user

    @app.get("/logout")
    def logout() -> str:
        session.clear()
        return "ok"

    return app


def timed(n: int, call: Callable[[int], object]) -> list[float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def summary(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"median {statistics.median(samples):7.0f} µs   p99 {cuts[98]:7.0f} µs"


def fs_type(path: str) -> str:
    result = subprocess.run(
        ["stat", "-f", "-c", "%T", path], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "?"


def written_bytes() -> int:
    """Bytes this process has sent toward block storage (0 for tmpfs), from /proc/self/io."""
    with open("/proc/self/io") as io:
        fields = dict(line.split(": ") for line in io.read().splitlines())
    return int(fields["write_bytes"])


def bench(base: str, sessions: int, requests: int) -> None:
    path = tempfile.mkdtemp(prefix="sqlite-session-bench-", dir=base)
    before = written_bytes()
    try:
        app = build_app(os.path.join(path, "s"))
        clients = [app.test_client() for _ in range(sessions)]
        logins = timed(sessions, lambda i: clients[i].get("/login"))
        adds = timed(requests, lambda i: clients[i % sessions].get("/add"))
        logouts = timed(sessions, lambda i: clients[i].get("/logout"))
        print(f"{base} ({fs_type(base)})")
        print(f"  read + write request  {summary(adds)}   ({requests} requests)")
        print(f"  new session (create)  {summary(logins)}   ({sessions})")
        print(f"  logout (remove)       {summary(logouts)}   ({sessions})")
        kib = (written_bytes() - before) / 1024 / (requests + 2 * sessions)
        print(f"  block-device writes   {kib:7.1f} KiB per request")
    finally:
        shutil.rmtree(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tmpfs", default="/dev/shm", help="a tmpfs directory")
    parser.add_argument("--disk", default=".bench-disk", help="a directory on disk")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2, help="alternate the two this often")
    args = parser.parse_args()
    os.makedirs(args.disk, exist_ok=True)
    for _ in range(args.rounds):
        for base in (args.tmpfs, args.disk):
            bench(base, args.sessions, args.requests)
    if args.disk == ".bench-disk":
        os.rmdir(args.disk)


if __name__ == "__main__":
    main()
