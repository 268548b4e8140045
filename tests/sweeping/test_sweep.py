"""The sweeper's semantics on real session files: what it removes, what it never touches."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from core_helpers import session_files

from sqlite_session.ids import new_session_id
from sqlite_session.janitor import LSTAT_GRACE, stats, sweep
from sqlite_session.store import Changes, OpenStatus, SessionStore, SweepOutcome, WriteOutcome
from sqlite_session.store.format import FORMAT_VERSION


@pytest.fixture
def store(session_dir: Path) -> SessionStore:
    session_dir.mkdir(mode=0o700)
    return SessionStore(str(session_dir))


def make_session(store: SessionStore, expires_in: float, value: bytes = b'"v"') -> str:
    """A real session file (through the store) expiring ``expires_in`` seconds from now."""
    sid = new_session_id()
    store.create(sid, Changes(upserts={"k": value}, expires_at=time.time() + expires_in))
    return sid


def path_of(store: SessionStore, sid: str) -> Path:
    return Path(store.path_for(sid))


def test_removes_expired_and_keeps_live(store: SessionStore, session_dir: Path) -> None:
    live = {make_session(store, 3600) for _ in range(5)}
    for _ in range(4):
        make_session(store, -5)

    report = sweep(session_dir)

    assert (report.sessions, report.removed, report.fresh) == (9, 4, 5)
    assert set(session_files(session_dir)) == {sid + ".session" for sid in live}
    for sid in live:
        assert store.open(sid).status is OpenStatus.LIVE
    assert report.summary().startswith("removed 4 expired of 9 sessions, freeing ")


def test_fresh_session_costs_one_stat(store: SessionStore, session_dir: Path) -> None:
    """A file whose mtime says "not expired" is never opened: garbage in it goes unnoticed."""
    sid = make_session(store, 3600)
    path = path_of(store, sid)
    mtime = path.stat().st_mtime
    path.write_bytes(b"not a database at all")
    os.utime(path, (mtime, mtime))

    report = sweep(session_dir, grace=0)

    assert (report.fresh, report.broken) == (1, 0)
    assert path.exists()


def test_stale_mtime_hint_is_rechecked_under_the_lock(
    store: SessionStore, session_dir: Path
) -> None:
    """An mtime in the past is only a hint: the expiry stored in the file decides."""
    sid = make_session(store, 3600)
    os.utime(path_of(store, sid), (1, 1))

    report = sweep(session_dir)

    assert (report.kept, report.removed) == (1, 0)
    assert store.open(sid).status is OpenStatus.LIVE


def test_moved_tombstones_removed_once_their_grace_passes(
    store: SessionStore, session_dir: Path
) -> None:
    tombstones = {}
    for grace in (3600.0, -1.0):
        old, new = make_session(store, 3600), new_session_id()
        changes = Changes(
            upserts={"k": b"1"}, expires_at=time.time() + 3600, move_to=new, moved_grace=grace
        )
        assert store.write(old, changes) is WriteOutcome.MOVED
        tombstones[grace] = old

    # (a mirror bounds the expiry within 2 s; the sweeper trusts it LSTAT_GRACE after)
    report = sweep(session_dir, now=time.time() + LSTAT_GRACE + 2)

    assert report.removed == 1
    assert not path_of(store, tombstones[-1.0]).exists()
    assert store.open(tombstones[3600.0]).status is OpenStatus.MOVED


def test_dry_run_reports_what_a_sweep_then_does(store: SessionStore, session_dir: Path) -> None:
    for expires_in in (-5, -5, 3600):
        make_session(store, expires_in)
    (session_dir / ".tmp-0123456789abcdef").write_bytes(b"")
    before = sorted(os.listdir(session_dir))
    seen: list[tuple[str, str]] = []

    dry = sweep(session_dir, dry_run=True, grace=0, on_event=lambda w, n: seen.append((w, n)))

    assert sorted(os.listdir(session_dir)) == before
    assert (dry.removed, dry.temp_removed, dry.dry_run) == (2, 1, True)
    assert sum(what == "would remove expired" for what, _ in seen) == 2
    assert dry.summary().startswith("would remove 2 expired of 3 sessions")
    real = sweep(session_dir, grace=0)
    assert (real.removed, real.temp_removed) == (2, 1)
    assert len(session_files(session_dir)) == 1


def test_session_in_use_is_skipped_then_removed(store: SessionStore, session_dir: Path) -> None:
    """A session whose write lock a request holds (here: another process) is busy."""
    sid = make_session(store, -5)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(session_dir), sid],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        report = sweep(session_dir, lock_timeout=0.05)
        assert (report.busy, report.removed) == (1, 0)
        assert path_of(store, sid).exists()
    finally:
        holder.communicate("release\n", timeout=30)
    report = sweep(session_dir)
    assert (report.busy, report.removed) == (0, 1)


HOLD_LOCK = """
import sys
from sqlite_session.store import SessionStore
store = SessionStore(sys.argv[1])
with store.transaction(sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def sqlite_db(path: Path, user_version: int = 0, application_id: int = 0) -> None:
    """A real SQLite database of another program (or of a newer format of ours)."""
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA application_id={application_id}")
    db.execute(f"PRAGMA user_version={user_version}")
    db.execute("CREATE TABLE t(x)")
    db.commit()
    db.close()


def test_unreadable_files_named_like_ours_are_removed_after_grace(
    store: SessionStore, session_dir: Path
) -> None:
    broken = {
        "empty": b"",
        "garbage": b"garbage " * 100,
        "truncated": path_of(store, make_session(store, -5)).read_bytes()[:1500],
    }
    names = {}
    for label, content in broken.items():
        names[label] = new_session_id() + ".session"
        (session_dir / names[label]).write_bytes(content)
    names["foreign db"] = new_session_id() + ".session"
    sqlite_db(session_dir / names["foreign db"])
    for name in names.values():
        os.utime(session_dir / name, (1, 1))
    for f in session_files(session_dir):
        if f not in names.values():
            os.unlink(session_dir / f)

    young = sweep(session_dir, grace=3600)
    assert (young.broken, young.broken_removed) == (4, 0)
    assert sorted(session_files(session_dir)) == sorted(names.values())

    old = sweep(session_dir, grace=0)
    assert (old.broken, old.broken_removed) == (4, 4)
    assert session_files(session_dir) == []


def test_newer_format_and_foreign_names_are_left_alone(
    store: SessionStore, session_dir: Path
) -> None:
    newer = new_session_id() + ".session"
    sqlite_db(session_dir / newer, user_version=FORMAT_VERSION + 1, application_id=0x53514C53)
    telethon = session_dir / "anon.session"  # another program's SQLite file, its own name
    sqlite_db(telethon)
    for name in (newer, "anon.session"):
        os.utime(session_dir / name, (1, 1))
    (session_dir / "notes.txt").write_text("keep me")
    (session_dir / ".tmp-not-hex").write_text("keep me")

    report = sweep(session_dir, grace=0)

    assert (report.newer, report.broken, report.broken_removed) == (1, 1, 0)
    assert report.foreign == 2
    assert sorted(os.listdir(session_dir)) == sorted(
        [newer, "anon.session", "notes.txt", ".tmp-not-hex"]
    )


def test_symlinks_and_directories_are_never_followed_nor_removed(
    store: SessionStore, session_dir: Path, tmp_path: Path
) -> None:
    decoy = tmp_path / "decoy"
    decoy.write_bytes(path_of(store, make_session(store, -5)).read_bytes())
    for f in session_files(session_dir):
        os.unlink(session_dir / f)
    link = session_dir / (new_session_id() + ".session")
    link.symlink_to(decoy)
    os.utime(link, (1, 1), follow_symlinks=False)
    directory = session_dir / (new_session_id() + ".session")
    directory.mkdir()
    journal_dir = session_dir / (new_session_id() + ".session-journal")
    journal_dir.mkdir()

    report = sweep(session_dir, grace=0)

    assert (report.foreign, report.directories, report.sessions, report.removed) == (1, 2, 0, 0)
    assert link.is_symlink() and directory.is_dir() and journal_dir.is_dir()
    assert decoy.read_bytes()[:16] == b"SQLite format 3\x00"


def test_stale_temporary_files_removed_after_grace(store: SessionStore, session_dir: Path) -> None:
    names = [".tmp-0123456789abcdef", ".tmp-0123456789abcdef-journal", ".probe-1234"]
    names += [".tmp-0123456789abcdef-wal", ".tmp-0123456789abcdef-shm"]
    for name in names:
        (session_dir / name).write_bytes(b"x")
        os.utime(session_dir / name, (time.time() + 3600,) * 2)  # mtime means nothing here

    assert sweep(session_dir, grace=3600).temp_removed == 0
    assert sorted(os.listdir(session_dir)) == sorted(names)
    assert sweep(session_dir, grace=0).temp_removed == len(names)
    assert os.listdir(session_dir) == []


def crash_mid_write(session_dir: Path, sid: str) -> None:
    """Kill a process in the middle of a write transaction.

    It leaves its -wal (holding the uncommitted pages it spilled) and -shm files behind.
    """
    code = """
import os, signal, sys, apsw
conn = apsw.Connection(sys.argv[1])
conn.execute("PRAGMA cache_size=1; BEGIN IMMEDIATE; UPDATE kv SET value = randomblob(20000)")
os.kill(os.getpid(), signal.SIGKILL)
"""
    path = os.path.join(session_dir, sid + ".session")
    proc = subprocess.run([sys.executable, "-c", code, path], check=False)
    assert proc.returncode == -signal.SIGKILL


def test_a_trailing_mtime_is_caught_up_and_the_session_kept(
    store: SessionStore, session_dir: Path
) -> None:
    """Writes move the mtime hint only in steps, so it may trail the stored expiry."""
    sid = make_session(store, 3600)
    path = path_of(store, sid)
    os.utime(path, (time.time() - 10,) * 2)

    report = sweep(session_dir)

    assert (report.kept, report.removed) == (1, 0)
    assert abs(path.stat().st_mtime - (time.time() + 3600)) < 60
    assert sweep(session_dir).fresh == 1  # from now on skipped with a stat


def test_wal_of_a_crashed_writer_is_kept(store: SessionStore, session_dir: Path) -> None:
    sid = make_session(store, 3600, value=b'"before"')
    crash_mid_write(session_dir, sid)
    wal, shm = Path(store.path_for(sid) + "-wal"), Path(store.path_for(sid) + "-shm")
    assert wal.stat().st_size > 10_000 and shm.exists()  # the spilled, uncommitted pages
    os.utime(store.path_for(sid), (time.time() + 3600,) * 2)

    report = sweep(session_dir, grace=0)

    assert (report.journals_kept, report.journals_removed) == (2, 0)
    assert wal.exists() and shm.exists()
    assert store.handle(sid).read("k") == (b'"before"', 0)  # the uncommitted write is not seen
    store.forget(sid)  # closing the last connection checkpoints and deletes both files
    assert not wal.exists() and not shm.exists()
    assert store.handle(sid).read("k") == (b'"before"', 0)


def test_expired_session_of_a_crashed_writer_is_removed_with_its_wal(
    store: SessionStore, session_dir: Path
) -> None:
    sid = make_session(store, -5)
    crash_mid_write(session_dir, sid)

    report = sweep(session_dir, grace=0)

    assert report.removed == 1
    assert os.listdir(session_dir) == []


def test_orphan_journal_removed_after_grace(store: SessionStore, session_dir: Path) -> None:
    orphan = session_dir / (new_session_id() + ".session-journal")
    orphan.write_bytes(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7" + bytes(504))
    sid = make_session(store, 3600)
    kept = Path(store.path_for(sid) + "-journal")
    kept.write_bytes(orphan.read_bytes())

    assert sweep(session_dir, grace=3600).journals_removed == 0
    assert orphan.exists()
    report = sweep(session_dir, grace=0)
    assert (report.journals_removed, report.journals_kept) == (1, 1)
    assert not orphan.exists() and kept.exists()


def test_files_vanishing_mid_sweep(store: SessionStore, session_dir: Path) -> None:
    """Another party removes everything while the sweep is under way: no error."""
    sids = [make_session(store, -5) for _ in range(50)]

    def remove_the_rest(what: str, name: str) -> None:
        for sid in sids:
            if sid + ".session" != name and path_of(store, sid).exists():
                path_of(store, sid).unlink()

    report = sweep(session_dir, on_event=remove_the_rest)

    assert report.removed >= 1 and report.removed + report.vanished <= 50
    assert report.errors == 0 and session_files(session_dir) == []
    assert store.sweep_file(sids[0], time.time()) is SweepOutcome.VANISHED


SWEEP_AT = """
import json, sys, time
from sqlite_session.janitor import sweep
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(json.dumps(vars(sweep(sys.argv[1], lock_timeout=0.05))))
"""


def test_two_sweepers_at_once(store: SessionStore, session_dir: Path) -> None:
    live = {make_session(store, 3600) for _ in range(200)}
    for _ in range(1000):
        make_session(store, -5)
    start = str(time.time() + 2)  # both start at the same moment, after their imports

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SWEEP_AT, str(session_dir), start], stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    reports = [json.loads(p.communicate(timeout=120)[0]) for p in procs]

    assert all(p.returncode == 0 for p in procs)
    assert sum(r["removed"] for r in reports) == 1000
    assert all(r["errors"] == r["broken"] == 0 for r in reports), [json.dumps(r) for r in reports]
    assert set(session_files(session_dir)) == {sid + ".session" for sid in live}


def test_stats(store: SessionStore, session_dir: Path) -> None:
    expiries = []
    for expires_in in (-50, -5, 100, 3600):
        sid = make_session(store, expires_in)
        expiries.append(path_of(store, sid).stat().st_mtime)
    (session_dir / ".tmp-00").write_bytes(b"x" * 5000)

    result = stats(session_dir)

    on_disk = sum(os.lstat(session_dir / n).st_blocks * 512 for n in session_files(session_dir))
    assert (result.sessions, result.expired, result.session_bytes) == (4, 2, on_disk)
    assert (result.oldest_expiry, result.newest_expiry) == (min(expiries), max(expiries))
    other = os.lstat(session_dir / ".tmp-00").st_blocks * 512
    assert (result.other_files, result.other_bytes) == (1, other)
