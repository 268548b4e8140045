"""A session file being built is never removed by the sweeper, whatever ``--grace`` says.

A new session is built under a ``.tmp-`` name and renamed into place; its creator holds
an ``flock`` on it meanwhile, and the sweeper removes a temporary file only once it can
take that lock itself. The test stops a real creation in the middle of SQLite's writes
(an apsw VFS that inherits every method from the default one and waits in ``xWrite``),
sweeps the directory with ``grace=0`` and lets the creation finish.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from core_helpers import session_files
from flask import Flask, session

from sqlite_session import SqliteSessionInterface
from sqlite_session.janitor import SweepReport, sweep
from sqlite_session.store import TEMP_PREFIX

BASE_VFS = apsw.vfs_names()[0]


class PausingFile(apsw.VFSFile):
    def __init__(self, vfs: PausingVFS, name: Any, flags: list[int]) -> None:
        super().__init__(BASE_VFS, name, flags)
        text = name if isinstance(name, str) or name is None else name.filename()
        self._building = TEMP_PREFIX in (text or "")
        self._vfs = vfs

    def xWrite(self, data: bytes, offset: int) -> None:
        if self._building and not self._vfs.paused.is_set():
            self._vfs.paused.set()
            assert self._vfs.resume.wait(30)
        super().xWrite(data, offset)


class PausingVFS(apsw.VFS):
    """The default VFS, except that the first write to a file being built waits."""

    def __init__(self) -> None:
        self.paused = threading.Event()
        self.resume = threading.Event()
        super().__init__("pause-building", BASE_VFS, makedefault=True)

    def xOpen(self, name: Any, flags: list[int]) -> apsw.VFSFile:
        return PausingFile(self, name, flags)


@pytest.fixture
def pausing_vfs() -> Iterator[PausingVFS]:
    vfs = PausingVFS()
    try:
        yield vfs
    finally:
        vfs.resume.set()
        vfs.unregister()


def login_paused_in_the_middle(
    session_dir: Path, vfs: PausingVFS, meanwhile: Callable[[], None]
) -> dict[str, Any]:
    """A login whose new session file is being built when ``meanwhile`` runs: its outcome."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test secret", TESTING=True)
    app.session_interface = SqliteSessionInterface(session_dir)

    @app.post("/login")
    def login() -> str:
        session["user"] = "ada"
        return "ok"

    outcome: dict[str, Any] = {}

    def log_in() -> None:
        try:
            outcome["status"] = app.test_client().post("/login").status_code
        except Exception as exc:  # reported by the main thread
            outcome["error"] = exc

    creator = threading.Thread(target=log_in)
    creator.start()
    assert vfs.paused.wait(30), "the creation never reached SQLite's first write"
    meanwhile()
    vfs.resume.set()
    creator.join(30)
    return outcome


def test_sweep_with_no_grace_leaves_a_file_being_built(
    session_dir: Path, pausing_vfs: PausingVFS
) -> None:
    reports: list[SweepReport] = []
    outcome = login_paused_in_the_middle(
        session_dir, pausing_vfs, lambda: reports.append(sweep(session_dir, grace=0))
    )
    assert outcome == {"status": 200}
    assert reports[0].temp_removed == 0
    assert session_files(session_dir)


def test_a_file_removed_by_hand_while_built_is_built_again(
    session_dir: Path, pausing_vfs: PausingVFS
) -> None:
    def remove_temporary_files() -> None:
        for path in session_dir.glob(TEMP_PREFIX + "*"):
            path.unlink()

    outcome = login_paused_in_the_middle(session_dir, pausing_vfs, remove_temporary_files)
    assert outcome == {"status": 200}
    assert session_files(session_dir)


def test_side_files_of_a_file_being_built_are_kept_until_its_lock_is_released(
    tmp_path: Path,
) -> None:
    """The lock is taken here as the store's creator takes it: flock on the .tmp- file."""
    directory = tmp_path / "sessions"
    SqliteSessionInterface(directory)
    names = [".tmp-0123456789abcdef", ".tmp-0123456789abcdef-wal", ".tmp-0123456789abcdef-shm"]
    for name in names:
        (directory / name).write_bytes(b"x")
    fd = os.open(directory / names[0], os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert sweep(directory, grace=0).temp_removed == 0
        assert sorted(os.listdir(directory)) == sorted(names)
    finally:
        os.close(fd)
    assert sweep(directory, grace=0).temp_removed == len(names)
    assert os.listdir(directory) == []
