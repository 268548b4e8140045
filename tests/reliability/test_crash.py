"""Crash safety: a writer killed with SIGKILL at random moments never corrupts a session.

A forked child saves one session in a loop through :class:`SessionStore`; every save
writes generation ``g`` into every key (about one page each, so a save rewrites a dozen
pages) and changes the key set with ``g``, so a save applied in part is visible as a
mix of generations or a wrong key set. After each kill the session must hold exactly
the last generation the child reported or the one it was writing, the file must pass
SQLite's integrity check, and a second session in the same directory must be
byte-for-byte untouched.

This test chose the journal mode: with WAL or the rollback journal (``DELETE``) and
``synchronous=OFF`` it passes; with ``journal_mode=MEMORY`` or ``OFF`` it fails
(see the comment at the top of ``sqlite_session/store.py``). Its saves rewrite more
pages than a WAL checkpoint waits for, so kills also land inside checkpoints.
"""

from __future__ import annotations

import os
import random
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import apsw

from sqlite_session.store import Changes, OpenStatus, SessionStore

KILLS = 250
TIME_LIMIT = 30.0  # seconds; the loop stops early rather than run long on a slow machine
MIN_KILLS = 100
SID = "c" * 43
CONTROL = "d" * 43
BASE_KEYS = 10
VALUE_PAD = 900  # bytes: one value per 1 KiB page


def key_count(gen: int) -> int:
    """Each generation has its own number of keys, so a half-applied delete shows."""
    return BASE_KEYS + gen % 5


def snapshot(gen: int) -> Changes:
    """The save of generation ``gen``: every key carries ``gen``, surplus keys deleted."""
    count = key_count(gen)
    value = f"{gen}:".encode() + b"x" * VALUE_PAD
    return Changes(
        upserts={f"k{i}": value for i in range(count)},
        deletes={f"k{i}" for i in range(count, BASE_KEYS + 5)},
        expires_at=time.time() + 3600,
    )


def writer(directory: str, gen: int, report: int) -> None:
    """The child: save generation after generation, reporting each one once committed."""
    store = SessionStore(directory)
    while True:
        gen += 1
        store.write(SID, snapshot(gen))
        os.write(report, gen.to_bytes(8, "little"))


def sid_of(gen: int) -> str:
    """The id the regenerating writer gives its session at generation ``gen``."""
    return f"{gen:043d}"


def regenerator(directory: str, gen: int, report: int) -> None:
    """The child: save and regenerate at once, again and again (``regenerate()`` + a write)."""
    store = SessionStore(directory)
    while True:
        gen += 1
        changes = snapshot(gen)
        changes.move_to, changes.moved_grace = sid_of(gen), 3600.0
        store.write(sid_of(gen - 1), changes)
        os.write(report, gen.to_bytes(8, "little"))


def run_child(
    directory: str, gen: int, loop: Callable[[str, int, int], None] = writer
) -> tuple[int, int]:
    """Fork a writer, let it run a random moment, SIGKILL it; return (last reported, status)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        try:
            os.close(read_end)
            loop(directory, gen, write_end)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(1)
    os.close(write_end)
    time.sleep(random.uniform(0.002, 0.03))
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    os.close(read_end)
    last = int.from_bytes(data[-8:], "little") if len(data) >= 8 else gen
    return last, status


def stored_generation(store: SessionStore, sid: str = SID) -> int:
    """The generation a session holds; fails if the keys disagree or the set is wrong."""
    opened = store.open(sid)
    assert opened.status is OpenStatus.LIVE and opened.handle is not None
    keys = opened.handle.keys()
    gens = set()
    for key in keys:
        row = opened.handle.read(key)
        assert row is not None
        gens.add(int(row[0].split(b":", 1)[0]))
    assert len(gens) == 1, f"a save was applied in part: generations {sorted(gens)}"
    gen = gens.pop()
    assert sorted(keys) == sorted(f"k{i}" for i in range(key_count(gen))), f"keys of gen {gen}"
    return gen


def integrity(path: Path) -> str:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchall()[0][0])
    finally:
        conn.close()


def test_sigkill_during_saves_leaves_old_or_new(tmp_path: Path) -> None:
    directory = str(tmp_path)
    store = SessionStore(directory, connection_cache_size=0)  # fresh connection per check
    store.create(SID, snapshot(0))
    store.create(CONTROL, snapshot(0))
    control = tmp_path / f"{CONTROL}.session"
    control_bytes = control.read_bytes()

    gen, kills, advanced = 0, 0, 0
    deadline = time.monotonic() + TIME_LIMIT
    while kills < KILLS and time.monotonic() < deadline:
        reported, status = run_child(directory, gen)
        assert os.WIFSIGNALED(status), "the writer died on its own (see its traceback above)"
        kills += 1
        found = stored_generation(store)
        assert found in (reported, reported + 1), f"reported {reported}, stored {found}"
        assert integrity(tmp_path / f"{SID}.session") == "ok"
        advanced += found > gen
        gen = found

    print(f"\n{kills} SIGKILLs survived; the session advanced to generation {gen}")
    assert kills >= MIN_KILLS
    assert advanced > kills // 2, "the writer was mostly killed before its first save"
    assert control.read_bytes() == control_bytes
    assert integrity(control) == "ok"


def test_sigkill_during_regenerate_keeps_exactly_one_live_session(tmp_path: Path) -> None:
    """A kill while the data moves to a new id leaves the old id live with the old data,
    or the old id a tombstone and the new one live with all of the new data."""
    directory = str(tmp_path)
    store = SessionStore(directory, connection_cache_size=0)
    store.create(sid_of(0), snapshot(0))
    gen, kills = 0, 0
    deadline = time.monotonic() + TIME_LIMIT / 2
    while kills < KILLS // 2 and time.monotonic() < deadline:
        reported, status = run_child(directory, gen, regenerator)
        assert os.WIFSIGNALED(status), "the writer died on its own (see its traceback above)"
        kills += 1
        if (tmp_path / f"{sid_of(reported + 1)}.session").exists():
            # the in-flight move built its target (renamed into place whole, never half)
            assert stored_generation(store, sid_of(reported + 1)) == reported + 1
        current = store.open(sid_of(reported)).status
        if current is OpenStatus.MOVED:  # the save in flight committed: its target holds it
            reported += 1
        else:
            assert current is OpenStatus.LIVE
        assert stored_generation(store, sid_of(reported)) == reported
        for older in range(gen, reported):  # tombstones: dead ids serve nothing
            assert store.open(sid_of(older)).status is OpenStatus.MOVED
            os.unlink(tmp_path / f"{sid_of(older)}.session")
        gen = reported
    print(f"\n{kills} SIGKILLs during regenerate survived (generation {gen})")
    assert kills >= MIN_KILLS // 2
