"""An I/O error on a session file that opened proves nothing about the file: the request
answers :class:`~sqlite_session.SessionStorageUnavailable` with its cookie and data kept,
and the sweeper keeps the file ("unopened") whatever its grace. Only a file that is not a
database, is corrupt or is not of our format is ever given up.

The disk's EIO comes from a VFS over SQLite's own that fails the reads of the session
files' data pages (the header page still reads: the file opens and is recognised) while
the block runs: SQLite and the files are real, only the device's answer is injected.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from core_helpers import add_counter, cookie_value, session_files, session_path, sid_of
from flask import Flask
from servers import app_answering_session_errors

from sqlite_session import SessionStorageUnavailable
from sqlite_session.janitor import sweep
from sqlite_session.store import PAGE_SIZE, SessionStore

_BASE_VFS = apsw.vfs_names()[0]


class _FailingFile(apsw.VFSFile):
    def __init__(self, vfs: FailingDisk, name: Any, flags: list[int]) -> None:
        super().__init__(_BASE_VFS, name, flags)
        self._disk = vfs

    def xRead(self, amount: int, offset: int) -> bytes:
        if self._disk.failing_from is not None and offset >= self._disk.failing_from:
            raise apsw.IOError("injected: the device answered EIO")
        data: bytes = super().xRead(amount, offset)
        return data


class FailingDisk(apsw.VFS):
    """SQLite's default VFS, whose reads at or past ``failing_from`` fail (None: none do)."""

    def __init__(self) -> None:
        self.failing_from: int | None = None
        super().__init__("failing-disk", _BASE_VFS, makedefault=True)

    def xOpen(self, name: Any, flags: list[int]) -> apsw.VFSFile:
        return _FailingFile(self, name, flags)


@pytest.fixture
def disk() -> Iterator[FailingDisk]:
    """The default VFS for connections opened in the test (build apps after it)."""
    vfs = FailingDisk()
    try:
        yield vfs
    finally:
        vfs.unregister()


@contextlib.contextmanager
def failing(disk: FailingDisk, from_offset: int = PAGE_SIZE) -> Iterator[None]:
    """Reads past ``from_offset`` fail in the block: by default the data pages only, so
    that the file opens and is recognised by its header."""
    disk.failing_from = from_offset
    try:
        yield
    finally:
        disk.failing_from = None


def build_app(directory: Path) -> Flask:
    return add_counter(app_answering_session_errors(directory))


def test_an_io_error_keeps_the_session_and_the_cookie(disk: FailingDisk, session_dir: Path) -> None:
    client = build_app(session_dir).test_client()
    assert client.post("/count").text == "1"
    sid, cookie = sid_of(client), cookie_value(client)
    client = build_app(session_dir).test_client()  # no pooled connection: opened afresh
    client.set_cookie("session", str(cookie))

    with failing(disk):
        read, write = client.get("/read"), client.post("/count")

    assert read.json is not None and read.json["error"] == "SessionStorageUnavailable"
    assert write.json is not None and write.json["error"] == "SessionStorageUnavailable"
    assert "Set-Cookie" not in read.headers and "Set-Cookie" not in write.headers
    assert sid_of(client) == sid
    assert client.get("/read").text == "1"


def test_the_sweeper_keeps_a_file_it_met_an_io_error_in(
    disk: FailingDisk, session_dir: Path
) -> None:
    build_app(session_dir).test_client().post("/count")
    names = session_files(session_dir)
    for name in names:  # no expiry mirror: the sweeper must open the file to judge it
        os.utime(session_dir / name)
    with failing(disk):
        report = sweep(session_dir, grace=0, now=4e9)  # expired long ago, no grace
    assert (report.unopened, report.broken, report.removed) == (1, 0, 0)
    assert session_files(session_dir) == names


# A second process tries to take the session's write lock at once; it must find it held.
_TRY_LOCK = """
import sys, apsw
conn = apsw.Connection(sys.argv[1])
conn.setbusytimeout(0)
try:
    conn.execute("BEGIN IMMEDIATE")
except apsw.BusyError:
    print("held")
else:
    print("free")
"""


def lock_seen_by_another_process(path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", _TRY_LOCK, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.strip()


def test_a_failed_open_keeps_the_locks_the_process_holds_on_the_file(
    disk: FailingDisk, session_dir: Path
) -> None:
    """Closing any descriptor of a file drops every POSIX lock the process holds on it:
    explaining a failed open must not open the file itself. A session of version 0.1
    (rollback journal) holds its write lock on the file itself."""
    client = build_app(session_dir).test_client()
    client.post("/count")
    path = session_path(session_dir, sid_of(client))
    del client
    legacy = apsw.Connection(str(path))
    legacy.execute("PRAGMA journal_mode=DELETE")
    legacy.close()

    writer, other = SessionStore(str(session_dir)), SessionStore(str(session_dir))
    sid = path.name.removesuffix(".session")
    with writer.transaction(sid):
        assert lock_seen_by_another_process(path) == "held"
        with failing(disk, from_offset=0), pytest.raises(SessionStorageUnavailable):
            other.open(sid)  # opens the file and fails to read its header: why?
        assert lock_seen_by_another_process(path) == "held"
