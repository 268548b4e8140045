"""Paths an operator or a co-tenant can get wrong: symlinked directories, hard links,
read-only storage, group-writable and empty or relative session paths.

A directory reached through a symlink (``/var/run -> /run``) is an ordinary
configuration: sessions work through it and the janitor never takes it for damage. A
link or a read-only file planted *at* a session's name is never written through: the
request carries on with a fresh session and a warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import apsw
import pytest
from core_helpers import (
    add_counter,
    session_files,
    session_path,
    sid_of,
)
from flask import Flask
from flask.testing import FlaskClient

from sqlite_session import SessionDirectoryError, SqliteSession, SqliteSessionInterface
from sqlite_session.cli import main
from sqlite_session.janitor import BackgroundSweeper, sweep

NOBODY = 65534


def counter_app(interface: SqliteSessionInterface | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test secret", PERMANENT_SESSION_LIFETIME=timedelta(days=31), TESTING=True
    )
    if interface is not None:
        app.session_interface = interface

    return add_counter(app, pad=3000)  # writes that reach the -wal


def counted(client: FlaskClient, times: int) -> list[str]:
    return [client.post("/count").text for _ in range(times)]


def directory_with_mode(path: Path, bits: int) -> Path:
    path.mkdir()
    path.chmod(bits)
    return path


@pytest.fixture
def symlinked(tmp_path: Path) -> Path:
    """``varrun/sessions`` where ``varrun -> run``: the session directory through a symlink."""
    (tmp_path / "run").mkdir()
    (tmp_path / "varrun").symlink_to(tmp_path / "run")
    return tmp_path / "varrun" / "sessions"


# -- a symlinked directory is fine -------------------------------------------------


def test_interface_through_a_symlinked_parent(symlinked: Path) -> None:
    interface = SqliteSessionInterface(symlinked)
    client = counter_app(interface).test_client()
    assert counted(client, 3) == ["1", "2", "3"]
    assert interface.path == os.path.realpath(symlinked)
    assert len(session_files(symlinked)) == 1


def test_extension_through_a_symlinked_parent(symlinked: Path) -> None:
    app = counter_app()
    app.config["SQLITE_SESSION_PATH"] = str(symlinked)
    SqliteSession(app)
    assert counted(app.test_client(), 3) == ["1", "2", "3"]


def live_sessions_with_trailing_hints(directory: Path, count: int) -> list[str]:
    """``count`` live sessions (31 days left) whose mtime hint trails far behind, so that
    a sweep opens every one of them to read its expiry."""
    app = counter_app(SqliteSessionInterface(directory))
    for _ in range(count):
        app.test_client().post("/count")
    names = session_files(directory)
    for name in names:
        os.utime(directory / name, (1, 1))
    return names


def test_cli_sweep_through_a_symlinked_path_keeps_live_sessions(symlinked: Path) -> None:
    names = live_sessions_with_trailing_hints(symlinked.parent.parent / "run" / "sessions", 5)
    assert main(["sweep", "--grace", "0", str(symlinked)]) == 0
    assert session_files(symlinked) == names


def test_inapp_sweeper_through_a_symlinked_path_keeps_live_sessions(symlinked: Path) -> None:
    names = live_sessions_with_trailing_hints(symlinked.parent.parent / "run" / "sessions", 5)
    report = BackgroundSweeper(str(symlinked), 60.0, grace=0).sweep_once()
    assert report is not None and (report.kept, report.broken) == (5, 0)
    assert session_files(symlinked) == names


# -- links and read-only files planted at a session's names ----------------------------


@pytest.fixture(params=["private", "group-writable"])
def shared(tmp_path: Path, request: pytest.FixtureRequest) -> SqliteSessionInterface:
    """An interface on a private directory (where only its owner and root can plant
    files), and on one its group may write to (where a co-tenant can): planted files are
    refused in both."""
    if request.param == "private":
        return SqliteSessionInterface(tmp_path / "sessions")
    directory = directory_with_mode(tmp_path / "sessions", 0o770)
    return SqliteSessionInterface(directory, allow_unsafe_directory=True)


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_a_hard_link_at_a_session_name_is_never_written_through(
    tmp_path: Path, shared: SqliteSessionInterface, suffix: str, caplog: pytest.LogCaptureFixture
) -> None:
    directory = Path(shared.path)
    client = counter_app(shared).test_client()
    client.post("/count")
    sid = sid_of(client)
    target = session_path(directory, sid).with_name(f"{sid}.session{suffix}")
    decoy = tmp_path / "decoy"
    if suffix:
        decoy.write_bytes(b"precious" * 4096)  # the size of a -shm
    else:  # a copy of the session: SQLite would take it for the real thing
        shutil.copy(target, decoy)
        target.unlink()
    os.link(decoy, target)
    before = decoy.read_bytes()

    caplog.set_level(logging.WARNING, logger="sqlite_session")
    assert counted(client, 2) == ["1", "2"]  # a fresh session, kept from then on
    assert sid_of(client) != sid
    assert any("hard links" in record.getMessage() for record in caplog.records)
    sweep(directory, grace=0, now=2e9)  # the janitor does not write through it either
    assert decoy.read_bytes() == before
    assert target.stat().st_nlink == 2


def test_a_hard_link_at_a_legacy_sessions_journal_is_never_written_through(
    tmp_path: Path, shared: SqliteSessionInterface, caplog: pytest.LogCaptureFixture
) -> None:
    """A session file of version 0.1 writes through a rollback ``-journal``, which SQLite
    opens as it finds it, as it does a ``-wal``."""
    directory = Path(shared.path)
    client = counter_app(shared).test_client()
    client.post("/count")  # a new file: the pool holds no connection to it
    path = session_path(directory, sid_of(client))
    legacy = apsw.Connection(str(path))
    legacy.execute("PRAGMA journal_mode=DELETE")
    legacy.close()
    decoy = tmp_path / "decoy"
    decoy.write_bytes(b"")  # empty: not a hot journal, opened and written as it is
    os.link(decoy, f"{path}-journal")

    caplog.set_level(logging.WARNING, logger="sqlite_session")
    answers = counted(client, 1)
    assert decoy.read_bytes() == b""
    assert answers == ["1"]  # a fresh session
    assert any("hard links" in record.getMessage() for record in caplog.records)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``chattr +i``: a file that opens read-only even for root (skipped where unsupported)."""
    if (
        shutil.which("chattr") is None
        or subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode
    ):
        pytest.skip("no chattr +i on this filesystem")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("how", ["immutable file", "directory at -shm"])
def test_read_only_storage_gives_a_fresh_session_not_a_500_loop(
    shared: SqliteSessionInterface, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite opens such a file read-only (it falls back when it cannot write), so every
    write would fail: it is refused when opened, like a planted file."""
    directory = Path(shared.path)
    client = counter_app(shared).test_client()
    client.post("/count")
    sid = sid_of(client)
    path = session_path(directory, sid)
    caplog.set_level(logging.WARNING, logger="sqlite_session")
    with contextlib.ExitStack() as stack:
        if how == "directory at -shm":
            Path(f"{path}-shm").mkdir()
        else:
            stack.enter_context(immutable(path))
        assert counted(client, 3) == ["1", "2", "3"]  # a fresh session, kept from then on
    assert sid_of(client) != sid
    messages = [record.getMessage() for record in caplog.records]
    assert any("read-only" in m or "not a regular file" in m for m in messages)


# -- directories and paths refused at construction -------------------------------------


@pytest.mark.parametrize("bits", [0o770, 0o775, 0o1770, 0o730])
def test_group_writable_directory_is_refused(tmp_path: Path, bits: int) -> None:
    directory = directory_with_mode(tmp_path / "sessions", bits)
    with pytest.raises(SessionDirectoryError, match="group") as refused:
        SqliteSessionInterface(directory)
    assert f"chmod 700 {directory}" in str(refused.value)
    SqliteSessionInterface(directory, allow_unsafe_directory=True)


@pytest.mark.parametrize("bits", [0o777, 0o770, 0o730, 0o703])
def test_a_directory_under_one_others_may_write_to_is_refused(tmp_path: Path, bits: int) -> None:
    """Whoever may write to an ancestor can swap the session directory for their own."""
    shared = directory_with_mode(tmp_path / "shared", bits)
    with pytest.raises(SessionDirectoryError, match="allow_unsafe_directory") as refused:
        SqliteSessionInterface(shared / "app" / "sessions")
    assert f"lies under {str(shared)!r}" in str(refused.value)
    assert f"chmod go-w {shared}" in str(refused.value)
    SqliteSessionInterface(shared / "app" / "sessions", allow_unsafe_directory=True)


@pytest.mark.parametrize("owner", ["root", "another user"])
def test_a_sticky_ancestor_is_safe_if_root_or_this_user_owns_it(tmp_path: Path, owner: str) -> None:
    """As /tmp: 1777 and root's. Owned by someone else, its owner may still swap entries."""
    if os.geteuid() != 0:
        pytest.skip("only root can give a directory to another user")
    shared = directory_with_mode(tmp_path / "shared", 0o1777)
    if owner == "root":
        SqliteSessionInterface(shared / "sessions")
        return
    os.chown(shared, NOBODY, NOBODY)
    with pytest.raises(SessionDirectoryError, match="lies under"):
        SqliteSessionInterface(shared / "sessions")


def test_empty_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SessionDirectoryError, match="empty"):
        SqliteSessionInterface("")
    app = counter_app()
    app.config["SQLITE_SESSION_PATH"] = ""
    with pytest.raises(SessionDirectoryError, match="empty"):
        SqliteSession(app)
    assert os.listdir(tmp_path) == []


def test_relative_path_is_resolved_once_and_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, logger="sqlite_session")
    interface = SqliteSessionInterface("sessions")
    absolute = str(tmp_path / "sessions")
    assert interface.path == absolute
    assert any(absolute in record.getMessage() for record in caplog.records)
    monkeypatch.chdir(tmp_path / "elsewhere")  # a later chdir changes nothing
    counter_app(interface).test_client().post("/count")
    assert len(session_files(tmp_path / "sessions")) == 1
    assert os.listdir(tmp_path / "elsewhere") == []
