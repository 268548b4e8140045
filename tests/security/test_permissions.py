"""Private files and directory, no symlink followed, and an
unusable directory refused when the interface is built.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from core_helpers import add_counter, after_revalidation, session_files, session_path, sid_of
from flask import Flask
from flask.testing import FlaskClient

from sqlite_session import SessionDirectoryError, SqliteSessionInterface
from sqlite_session.ids import IdSigner


def routes(app: Flask) -> FlaskClient:
    return add_counter(app).test_client()


@pytest.mark.usefixtures("open_umask")
def test_a_session_file_is_never_opened_through_a_symlink(
    app: Flask, session_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = routes(app)
    client.get("/count")
    client.get("/count")
    real = session_path(session_dir, sid_of(client))
    decoy = tmp_path / "decoy.session"  # a real session file holding k=2
    shutil.copy(real, decoy)
    decoy_bytes = decoy.read_bytes()
    victim_sid = sid_of(client)
    real.unlink()
    real.symlink_to(decoy)
    after_revalidation()  # until then the process reads the unlinked file it has open

    attacker = app.test_client()
    attacker.set_cookie("session", IdSigner(["test secret"]).sign(victim_sid))
    caplog.set_level(logging.WARNING, logger="sqlite_session")
    assert attacker.get("/read").text == "None"  # the decoy's data is not served
    attacker.set_cookie("session", IdSigner(["test secret"]).sign(victim_sid))
    attacker.get("/count")
    assert sid_of(attacker) != victim_sid
    assert decoy.read_bytes() == decoy_bytes  # never written through the link
    assert real.is_symlink()
    assert any(r.name == "sqlite_session" for r in caplog.records)


def test_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("not a directory")
    with pytest.raises(SessionDirectoryError, match="not a directory"):
        SqliteSessionInterface(target)
    assert target.read_text() == "not a directory"


def test_path_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SessionDirectoryError):
        SqliteSessionInterface(tmp_path / "file" / "sessions")


def test_unwritable_directory_is_refused(tmp_path: Path) -> None:
    """chmod does not stop root, so root tests an immutable directory instead."""
    directory = tmp_path / "readonly"
    directory.mkdir(mode=0o700)
    if os.geteuid() == 0:
        if (
            shutil.which("chattr") is None
            or subprocess.run(
                ["chattr", "+i", str(directory)], capture_output=True, check=False
            ).returncode
        ):
            pytest.skip("running as root on a filesystem without chattr +i")
    else:
        directory.chmod(0o500)
    try:
        with pytest.raises(SessionDirectoryError, match="not writable"):
            SqliteSessionInterface(directory)
        assert session_files(directory) == [] and os.listdir(directory) == []
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        else:
            directory.chmod(0o700)


def test_existing_private_directory_is_accepted_as_is(tmp_path: Path) -> None:
    directory = tmp_path / "mine"
    directory.mkdir(mode=0o700)
    (directory / "unrelated.txt").write_text("kept")
    SqliteSessionInterface(directory)
    assert (directory / "unrelated.txt").read_text() == "kept"
    assert os.listdir(directory) == ["unrelated.txt"]  # the write probe left nothing
