"""Shared fixtures: a real Flask app on a real session directory.

Each folder holds one part of the contract: ``api`` what a Flask app sees of the
session, ``cookies`` the cookie and its signed id, ``storage`` the files (one row per
key, lazy, expiry, limits, the connection pool), ``reliability`` failures (concurrency,
damaged files, a full disk, no descriptors, crashes), ``security`` hostile paths and
permissions, ``sweeping`` the janitor, ``deployment`` real servers and the recipes,
``project`` the docs, packaging and conventions.

The helpers tests import (files, cookies, descriptors, the I/O spy, the counter app)
live in :mod:`core_helpers`, the real servers in :mod:`servers`; this folder is on
``sys.path``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from core_helpers import ROOT
from flask import Flask

from sqlite_session import SqliteSessionInterface

sys.path.insert(0, str(ROOT / "scripts"))  # the demo app is importable as demo_app


@pytest.fixture
def session_dir(tmp_path: Path) -> Path:
    """A fresh session directory (created by the interface)."""
    return tmp_path / "sessions"


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
