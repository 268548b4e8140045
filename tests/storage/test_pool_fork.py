"""Pooled connections never cross a fork: the child opens its own."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from sqlite_session.store import Changes, OpenStatus, SessionStore

SID = "A" * 43


def _child_status(store: SessionStore) -> int:
    """Run in the forked child: 0 when it starts with an empty pool and still reads."""
    signal.alarm(10)  # a deadlocked child dies (and the test fails) instead of hanging
    if store._pool._idle or store._pool._size:
        return 3  # the parent's connections are still there
    opened = store.open(SID, "k")
    if opened.status is not OpenStatus.LIVE or opened.row is None or opened.row[0] != b"1":
        return 4
    return 0 if store._pool._size == 1 else 5  # and the child pools its own


def _fork_and_check(store: SessionStore) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child exits before coverage is written
        os._exit(_child_status(store))
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_forked_child_drops_the_inherited_connections(tmp_path: Path) -> None:
    store = SessionStore(str(tmp_path))
    store.create(SID, Changes(upserts={"k": b"1"}, expires_at=4e9))
    assert store.open(SID, "k").status is OpenStatus.LIVE
    assert store._pool._size == 1  # the parent keeps its connection pooled
    assert _fork_and_check(store) == 0
    assert store._pool._size == 1 and store.open(SID, "k").row == (b"1", 0)


def test_a_fork_while_another_thread_holds_the_pool_lock_does_not_deadlock(
    tmp_path: Path,
) -> None:
    store = SessionStore(str(tmp_path))
    store.create(SID, Changes(upserts={"k": b"1"}, expires_at=4e9))
    store.open(SID, "k")
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with store._pool._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    held.wait(10)
    try:
        assert _fork_and_check(store) == 0
    finally:
        release.set()
        holder.join()
