"""Shared fixtures: a real Flask app on a real session directory."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from flask import Flask

from sqlite_session import SqliteSessionInterface

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))  # the demo app is importable as demo_app


@pytest.fixture
def session_dir(tmp_path: Path) -> Path:
    """A fresh session directory (created by the interface)."""
    return tmp_path / "sessions"


def session_files(directory: Path) -> list[str]:
    """The session files in ``directory`` (no temporary or journal files)."""
    if not directory.exists():
        return []
    return sorted(name for name in os.listdir(directory) if name.endswith(".session"))


def stored_rows(path: str | Path) -> list[tuple[str, int]]:
    """What a session file holds, read by SQLite itself: (key, bytes of its value) by key."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return [(k, n) for k, n in conn.execute("SELECT key, length(value) FROM kv ORDER BY key")]
    finally:
        conn.close()


@pytest.fixture
def make_app(session_dir: Path) -> Callable[..., Flask]:
    """Build a Flask app on ``session_dir`` with the given interface options."""

    def build(**options: Any) -> Flask:
        app = Flask(__name__)
        app.config.update(SECRET_KEY="test secret", TESTING=True)
        app.session_interface = SqliteSessionInterface(session_dir, **options)
        return app

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    yield make_app()


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Umask 0, so modes seen on disk are the ones the code chose, not the umask's."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)
