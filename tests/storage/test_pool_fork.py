"""Pooled connections never cross a fork: the child opens its own.

Seen from outside through the descriptors the child holds on the session file: one that
reused a connection inherited from its parent would open none of its own.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from core_helpers import open_session_files

from sqlite_session.store import Changes, OpenStatus, SessionStore

SID = "A" * 43


def _child_status(store: SessionStore) -> int:
    """Run in the forked child: 0 when it opens a connection of its own, then pools it."""
    signal.alarm(10)  # a deadlocked child dies (and the test fails) instead of hanging
    inherited = len(open_session_files(store.directory))  # closed or not, never used
    opened = store.open(SID, "k")
    if opened.status is not OpenStatus.LIVE or opened.row is None or opened.row[0] != b"1":
        return 4
    if len(open_session_files(store.directory)) != inherited + 1:
        return 3  # the parent's connection was used instead of a new one
    store.open(SID, "k")
    # and the child pools its own: a second read opens nothing more
    return 0 if len(open_session_files(store.directory)) == inherited + 1 else 5


def _fork_and_check(store: SessionStore) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child exits before coverage is written
        os._exit(_child_status(store))
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.fixture
def locks_made_by_the_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[threading.Lock]]:
    """Every lock ``threading.Lock()`` hands out while a store is built in the test."""
    made: list[threading.Lock] = []
    real_lock = threading.Lock

    def recording_lock() -> threading.Lock:
        lock = real_lock()
        made.append(lock)
        return lock

    monkeypatch.setattr(threading, "Lock", recording_lock)
    yield made


def test_a_forked_child_drops_the_inherited_connections(tmp_path: Path) -> None:
    store = SessionStore(str(tmp_path))
    store.create(SID, Changes(upserts={"k": b"1"}, expires_at=4e9))
    assert store.open(SID, "k").status is OpenStatus.LIVE
    path = store.path_for(SID)
    assert open_session_files(tmp_path) == [path]  # the parent keeps its connection pooled
    assert _fork_and_check(store) == 0
    assert store.open(SID, "k").row == (b"1", 0)
    assert open_session_files(tmp_path) == [path]  # and still uses that one


def test_a_fork_while_another_thread_holds_the_pool_lock_does_not_deadlock(
    tmp_path: Path, locks_made_by_the_store: list[threading.Lock], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SessionStore(str(tmp_path))
    monkeypatch.undo()  # only the store's own locks were recorded
    assert locks_made_by_the_store, "the store guards its pool with a lock"
    store.create(SID, Changes(upserts={"k": b"1"}, expires_at=4e9))
    store.open(SID, "k")
    held, release = threading.Event(), threading.Event()

    def hold_the_locks() -> None:
        for lock in locks_made_by_the_store:
            lock.acquire()
        held.set()
        release.wait(10)
        for lock in locks_made_by_the_store:
            lock.release()

    holder = threading.Thread(target=hold_the_locks)
    holder.start()
    held.wait(10)
    try:
        assert _fork_and_check(store) == 0
    finally:
        release.set()
        holder.join()
