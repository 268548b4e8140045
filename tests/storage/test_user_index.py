"""The user index: a user's sessions found without a scan, confirmed by their files,
consistent when a process is killed between the index and the file, rebuilt from the
files when missing or damaged, pruned by the sweeper (real files, real processes)."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import apsw
import pytest

from sqlite_session.ids import new_session_id
from sqlite_session.janitor import stats, sweep
from sqlite_session.store import Changes, OpenStatus, SessionStore, WriteOutcome
from sqlite_session.store.accounts import Accounts
from sqlite_session.store.user_index import (
    INDEX_APPLICATION_ID,
    INDEX_NAME,
    PRUNE_AFTER,
    UserIndex,
)


@pytest.fixture
def store(session_dir: Path) -> SessionStore:
    session_dir.mkdir(mode=0o700)
    return SessionStore(str(session_dir))


def new_session(store: SessionStore, expires_in: float = 3600.0) -> str:
    sid = new_session_id()
    store.create(sid, Changes(upserts={"k": b'"v"'}, expires_at=time.time() + expires_in))
    return sid


def test_a_users_sessions_are_listed_with_opaque_handles(store: SessionStore) -> None:
    accounts = Accounts(store)
    alice = [new_session(store) for _ in range(3)]
    bob = new_session(store)
    handles = {accounts.assign(sid, "alice", agent="Firefox", address="192.0.2.0") for sid in alice}
    accounts.assign(bob, "bob")
    listed = accounts.sessions("alice")
    assert {s.sid for s in listed} == set(alice)
    assert {s.handle for s in listed} == handles
    for info in listed:
        assert info.handle not in info.sid and info.sid not in info.handle
        assert info.agent == "Firefox" and info.address == "192.0.2.0"
        assert info.established_at <= time.time() < info.expires_at
    assert [s.sid for s in accounts.sessions("bob")] == [bob]
    assert accounts.sessions("carol") == []


def test_an_entry_never_leads_to_another_users_session(store: SessionStore) -> None:
    accounts = Accounts(store)
    bob = new_session(store)
    accounts.assign(bob, "bob")
    # A leftover entry naming bob's session under alice (as a crash or a bug could leave).
    accounts.index.add("alice", bob)
    assert accounts.sessions("alice") == []
    handle = accounts.index.entries("alice")[0].handle
    assert not accounts.revoke("alice", handle)
    assert store.open(bob).status is OpenStatus.LIVE


def test_a_user_change_and_a_loss_update_the_index(store: SessionStore) -> None:
    accounts = Accounts(store)
    sid = new_session(store)
    first = accounts.assign(sid, "alice")
    assert accounts.assign(sid, "alice") == first  # no change: same handle
    accounts.assign(sid, "bob")
    assert accounts.sessions("alice") == [] and accounts.index.entries("alice") == []
    assert [s.sid for s in accounts.sessions("bob")] == [sid]
    assert accounts.assign(sid, None) is None
    assert accounts.sessions("bob") == [] and accounts.index.entries("bob") == []


def test_revoke_removes_the_file_and_an_in_flight_save_cannot_bring_it_back(
    store: SessionStore,
) -> None:
    accounts = Accounts(store)
    sid = new_session(store)
    handle = accounts.assign(sid, "alice")
    assert handle is not None
    in_flight = store.open(sid, hold=True)  # a request that read the session before
    assert in_flight.status is OpenStatus.LIVE
    assert accounts.revoke("alice", handle)
    assert not os.path.exists(store.path_for(sid))
    late = Changes(upserts={"k": b'"late"'}, expires_at=time.time() + 3600)
    assert in_flight.handle is not None
    assert in_flight.handle.write(late) is WriteOutcome.GONE
    assert not os.path.exists(store.path_for(sid))
    assert accounts.sessions("alice") == []


def test_revoke_all_but_the_current_one(store: SessionStore) -> None:
    accounts = Accounts(store)
    sids = [new_session(store) for _ in range(3)]
    for sid in sids:
        accounts.assign(sid, "alice")
    assert accounts.revoke_all("alice", keep_sid=sids[0]) == 2
    assert [s.sid for s in accounts.sessions("alice")] == [sids[0]]
    assert accounts.revoke_all("alice") == 1
    assert not [name for name in os.listdir(store.directory) if name.endswith(".session")]


@pytest.mark.parametrize("damage", ["missing", "garbage", "foreign database"])
def test_a_missing_or_damaged_index_is_rebuilt_and_nobody_is_logged_out(
    store: SessionStore, damage: str
) -> None:
    accounts = Accounts(store)
    sids = [new_session(store) for _ in range(4)]
    for i, sid in enumerate(sids):
        accounts.assign(sid, f"user{i % 2}")
    index = Path(accounts.index.path)
    UserIndex(store.directory).discard()
    if damage == "garbage":
        index.write_bytes(b"\xa5" * 4096)
    elif damage == "foreign database":
        apsw.Connection(str(index)).execute("CREATE TABLE x(y)")
    assert {s.sid for s in Accounts(store).sessions("user0")} == {sids[0], sids[2]}
    assert {s.sid for s in Accounts(store).sessions("user1")} == {sids[1], sids[3]}
    for sid in sids:
        assert store.open(sid).status is OpenStatus.LIVE


@pytest.mark.parametrize("planted", ["empty file", "header without its table"])
def test_an_index_left_half_created_is_rebuilt_at_the_next_use(
    store: SessionStore, planted: str
) -> None:
    """What a process killed while creating the index used to leave: every later use
    failed with "no such table". Now it is rebuilt, for a login as for a listing."""
    accounts = Accounts(store)
    alice, bob = new_session(store), new_session(store)
    accounts.assign(alice, "alice")
    index = Path(accounts.index.path)
    UserIndex(store.directory).discard()
    index.touch(mode=0o600)
    if planted == "header without its table":
        conn = apsw.Connection(str(index))
        conn.execute(f"PRAGMA application_id={INDEX_APPLICATION_ID}; PRAGMA user_version=1")
        conn.close()
    assert Accounts(store).assign(bob, "bob") is not None
    assert [s.sid for s in Accounts(store).sessions("alice")] == [alice]
    assert [s.sid for s in Accounts(store).sessions("bob")] == [bob]


def test_a_new_index_appears_complete_or_not_at_all(store: SessionStore) -> None:
    """The index is built under a temporary name: a child killed while building it
    leaves no index file (only a temporary one the sweeper removes)."""
    sid = new_session(store)
    Accounts(store).assign(sid, "alice")
    UserIndex(store.directory).discard()
    child = multiprocessing.get_context("fork").Process(
        target=_build_index_then_die, args=(store.directory,)
    )
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert not Path(UserIndex(store.directory).path).exists()
    assert [s.sid for s in Accounts(store).sessions("alice")] == [sid]


def _build_index_then_die(directory: str) -> None:
    """In a child process: build the index and die by SIGKILL once its schema is written."""
    real_execute = apsw.Connection.execute

    class Dying(apsw.Connection):
        def execute(self, statement: str, *args: object) -> apsw.Cursor:
            cursor = real_execute(self, statement, *args)
            if "CREATE TABLE entry" in statement or "PRAGMA application_id" in statement:
                os.kill(os.getpid(), signal.SIGKILL)
            return cursor

    apsw.Connection = Dying  # type: ignore[misc]
    Accounts(SessionStore(directory)).rebuild()


def test_first_logins_in_many_processes_at_once_all_succeed(tmp_path: Path) -> None:
    """While one process links the new index into place, the others' logins wait for it
    or build it themselves: none fails because the file appeared in the middle of its
    open, where SQLite falls back to read-only or to nothing (two gunicorn workers'
    first logins met so in the deployment test)."""
    processes, rounds = 4, 250
    context = multiprocessing.get_context("fork")
    failed = []
    for round_ in range(rounds):
        directory = tmp_path / f"round{round_}"
        directory.mkdir(mode=0o700)
        store = SessionStore(str(directory))
        sids = [new_session(store) for _ in range(processes)]
        start, results = context.Barrier(processes), context.Queue()
        children = [
            context.Process(target=_log_in_at_once, args=(str(directory), sid, start, results))
            for sid in sids
        ]
        for child in children:
            child.start()
        outcomes = [results.get(timeout=30) for _ in children]
        for child in children:
            child.join(30)
        failed += [outcome for outcome in outcomes if outcome != "ok"]
        assert failed == [], f"round {round_}: {failed[0]}"
        assert {s.sid for s in Accounts(store).sessions("alice")} == set(sids)


def _log_in_at_once(directory: str, sid: str, start: Barrier, results: Queue[str]) -> None:
    """In a child process: log alice in to session ``sid`` when all the others do."""
    accounts = Accounts(SessionStore(directory))
    start.wait(10)
    time.sleep(random.uniform(0, 0.003))  # spread over the time a build takes
    try:
        accounts.assign(sid, "alice")
    except Exception as exc:  # reported to the test, which shows it
        results.put(f"{type(exc).__name__}: {exc}")
    else:
        results.put("ok")


def test_the_sweeper_prunes_the_entries_of_the_sessions_it_removes(
    store: SessionStore, session_dir: Path
) -> None:
    accounts = Accounts(store)
    expiring, staying = new_session(store, expires_in=1), new_session(store)
    accounts.assign(expiring, "alice")
    accounts.assign(staying, "alice")
    report = sweep(session_dir, now=time.time() + PRUNE_AFTER + 10)
    assert report.removed == 1 and report.index_pruned == 1 and report.foreign == 0
    assert [e.sid for e in accounts.index.entries("alice")] == [staying]
    # The index is neither a session nor another file (the open session's -wal/-shm are).
    side_files = [n for n in os.listdir(session_dir) if n.endswith(("-wal", "-shm"))]
    theirs = [n for n in side_files if not n.startswith(INDEX_NAME)]
    assert stats(session_dir).other_files == len(theirs)


def _assign_then_die(directory: str, sid: str, kill_after_index: bool) -> None:
    """In a child process: record alice in ``sid`` and die by SIGKILL half-way."""
    accounts = SessionStore(directory).accounts
    if kill_after_index:
        add = accounts.index.add

        def add_then_die(user: str, sid: str) -> str:
            add(user, sid)
            os.kill(os.getpid(), signal.SIGKILL)  # after the index's commit, before the file's
            raise AssertionError("unreachable")

        accounts.index.add = add_then_die  # type: ignore[method-assign]
    accounts.assign(sid, "alice")


def _run_child(directory: str, sid: str, kill_after_index: bool) -> int | None:
    child = multiprocessing.get_context("fork").Process(
        target=_assign_then_die, args=(directory, sid, kill_after_index)
    )
    child.start()
    child.join(30)
    return child.exitcode


def test_sigkill_between_the_index_and_the_file_leaves_nothing_wrong(
    store: SessionStore,
) -> None:
    accounts = Accounts(store)
    sid = new_session(store)
    assert _run_child(store.directory, sid, kill_after_index=True) == -signal.SIGKILL
    # The entry was written, the file never got its user: it is not listed, not revocable.
    assert len(accounts.index.entries("alice")) == 1
    assert accounts.sessions("alice") == []
    assert store.open(sid).status is OpenStatus.LIVE
    # A later login of the same session works and is listed once.
    accounts.assign(sid, "alice")
    assert [s.sid for s in accounts.sessions("alice")] == [sid]


def test_sigkill_at_random_moments_never_hides_a_logged_in_session(
    store: SessionStore,
) -> None:
    """Children that record users are killed at random moments; every file that holds
    a user is listed for that user, and nothing else is."""
    accounts = Accounts(store)
    sids = [new_session(store) for _ in range(40)]
    ctx = multiprocessing.get_context("fork")
    for round_ in range(8):
        child = ctx.Process(target=_assign_many, args=(store.directory, sids, round_))
        child.start()
        time.sleep(0.01 + 0.005 * round_)
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join(30)
    users = {f"user{i}" for i in range(3)}
    listed = {user: {s.sid for s in accounts.sessions(user)} for user in users}
    for sid in sids:
        with store.transaction(sid) as tx:
            owner = tx.user.read().user
        for user in users:
            assert (sid in listed[user]) == (owner == user), (sid, owner, listed)


def _assign_many(directory: str, sids: list[str], round_: int) -> None:
    accounts = Accounts(SessionStore(directory))
    for i, sid in enumerate(sids):
        accounts.assign(sid, f"user{(i + round_) % 3}")


def test_a_format_1_file_is_read_written_and_gains_a_user(store: SessionStore) -> None:
    """Files written by version 0.1 (format 1, no account columns) keep working."""
    import apsw

    sid = new_session(store)
    conn = apsw.Connection(store.path_for(sid))
    for column in ("established_at", "handle", "user", "agent", "address", "lifetime"):
        conn.execute(f"ALTER TABLE meta DROP COLUMN {column}")
    conn.execute("PRAGMA user_version=1")
    conn.close()
    store.forget(sid)
    assert store.open(sid).status is OpenStatus.LIVE
    changes = Changes(upserts={"k": b'"w"'}, expires_at=time.time() + 3600)
    assert store.write(sid, changes) is WriteOutcome.WRITTEN
    assert store.handle(sid).read("k") is not None
    accounts = Accounts(store)
    handle = accounts.assign(sid, "alice")
    [info] = accounts.sessions("alice")
    assert info.handle == handle and info.established_at <= time.time()
    assert store.handle(sid).read("k") == (b'"w"', 1)
