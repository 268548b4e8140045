"""Benchmark: list one user's sessions with 1,000,000 sessions in the user index.

Run it with ``.venv/bin/python scripts/bench_user_index.py [DIR]`` (default: a fresh
directory under /dev/shm, removed at the end). It fills the user index with 1,000,000
entries spread over 400,000 users, then gives one user three real session files and
times :meth:`Accounts.sessions` for that user: the index lookup plus the confirmation of
each entry against its session file, the whole cost of a listing.

Only the index holds a million rows; the other 999,997 session files are not created.
A listing never looks at them: it reads the user's index rows (an index lookup, so its
cost depends on the number of the user's sessions, not on the number stored) and opens
the user's own files. Creating a million 4 KiB files would only fill the tmpfs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time

import apsw

from sqlite_session.ids import new_session_id
from sqlite_session.store import Changes, SessionStore
from sqlite_session.store.accounts import Accounts
from sqlite_session.store.user_index import UserIndex

ENTRIES = 1_000_000
USERS = 400_000
REPEATS = 2_000


def fill_index(index: UserIndex, count: int) -> None:
    """``count`` entries of random users, in one transaction (the index's own schema)."""
    index.rebuild([], keep_after=0.0)  # an empty index with its schema
    conn = apsw.Connection(index.path)
    now = time.time()
    with conn:
        conn.executemany(
            "INSERT INTO entry VALUES (?, ?, ?, ?)",
            (
                (secrets.token_urlsafe(16), f"user{i % USERS}", new_session_id(), now)
                for i in range(count)
            ),
        )
    conn.close()


def main(directory: str) -> None:
    store = SessionStore(directory)
    accounts = Accounts(store)
    started = time.monotonic()
    fill_index(accounts.index, ENTRIES - 3)
    print(f"index of {ENTRIES - 3} entries written in {time.monotonic() - started:.1f} s")
    for _ in range(3):
        sid = new_session_id()
        store.create(sid, Changes(upserts={"k": b"1"}, expires_at=time.time() + 3600))
        accounts.assign(sid, "alice", agent="bench", address="192.0.2.0")
    assert len(accounts.sessions("alice")) == 3
    timings = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        accounts.sessions("alice")
        timings.append(time.perf_counter() - start)
    size = os.path.getsize(accounts.index.path) / 2**20
    print(
        f"list 3 sessions of one user among {ENTRIES} indexed: median "
        f"{statistics.median(timings) * 1e3:.3f} ms, p99 "
        f"{statistics.quantiles(timings, n=100)[98] * 1e3:.3f} ms "
        f"({REPEATS} listings; index file {size:.0f} MiB)"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        work = tempfile.mkdtemp(prefix="bench-user-index-", dir="/dev/shm")
        try:
            main(work)
        finally:
            shutil.rmtree(work)
