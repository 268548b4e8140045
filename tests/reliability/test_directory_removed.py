"""The session directory removed while the app runs (``rm -rf``, systemd's RemoveIPC, a
remount): the first save that needs it re-creates it with the same checks and a warning;
where it cannot, a :class:`~sqlite_session.SessionDirectoryError`, never a raw OSError.
"""

from __future__ import annotations

import logging
import shutil
import stat
from pathlib import Path

import pytest
from core_helpers import session_files
from flask import Flask, session
from servers import app_answering_session_errors


def build_app(directory: Path) -> Flask:
    app = app_answering_session_errors(directory)

    @app.post("/login")
    def login() -> str:
        session["user"] = "ada"
        return "ok"

    @app.get("/whoami")
    def whoami() -> str:
        return str(session.get("user"))

    return app


def test_removed_directory_is_recreated_private_at_the_next_save(
    open_umask: None, session_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = build_app(session_dir)
    assert app.test_client().post("/login").status_code == 200
    shutil.rmtree(session_dir)

    caplog.set_level(logging.WARNING, logger="sqlite_session")
    client = app.test_client()
    assert client.post("/login").status_code == 200
    assert client.get("/whoami").text == "ada"
    assert stat.S_IMODE(session_dir.stat().st_mode) == 0o700
    assert len(session_files(session_dir)) == 1
    assert any("disappeared" in record.getMessage() for record in caplog.records)


def test_a_directory_that_cannot_be_recreated_is_a_session_directory_error(
    session_dir: Path,
) -> None:
    app = build_app(session_dir)
    shutil.rmtree(session_dir)
    session_dir.write_text("a file where the directory was")

    response = app.test_client().post("/login")

    assert response.json == {"error": "SessionDirectoryError", "where": "save"}
    assert session_dir.read_text() == "a file where the directory was"
