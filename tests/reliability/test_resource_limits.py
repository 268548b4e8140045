"""A process out of file descriptors: transient, never a lost session nor a lost cookie.

The descriptors are really exhausted: the test lowers this process's ``RLIMIT_NOFILE``,
opens ``/dev/null`` until ``EMFILE``, makes real Flask requests and sweeps, then gives
everything back. A request that cannot open its session answers
:class:`~sqlite_session.SessionStorageUnavailable` (here turned into a response by the
documented error handlers) and leaves the cookie and the stored data alone; the pool
first gives back the descriptors of its idle connections and tries again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from core_helpers import add_counter, descriptors_exhausted, session_files, sid_of
from flask import Flask, session
from flask.testing import FlaskClient
from servers import app_answering_session_errors

from sqlite_session.janitor import sweep


def build_app(directory: Path) -> Flask:
    app = add_counter(app_answering_session_errors(directory))

    @app.post("/blind")
    def blind() -> str:
        session["seen"] = True  # written at the save, without reading first
        return "ok"

    return app


def logged_in(app: Flask) -> FlaskClient:
    client = app.test_client()
    assert client.post("/count").text == "1"
    return client


@pytest.mark.parametrize(
    ("method", "url"), [("GET", "/read"), ("POST", "/count"), ("POST", "/blind")]
)
def test_no_descriptor_left_keeps_the_session_and_the_cookie(
    session_dir: Path, method: str, url: str
) -> None:
    app = build_app(session_dir)
    client = logged_in(app)  # its file is not pooled: the write created it
    sid = sid_of(client)
    with descriptors_exhausted():
        response = client.open(url, method=method)
    assert response.json == {"error": "SessionStorageUnavailable", "where": response.json["where"]}
    assert "Set-Cookie" not in response.headers  # neither deleted nor replaced
    assert sid_of(client) == sid
    assert client.get("/read").text == "1"  # the stored session is intact
    assert client.post("/count").text == "2"


def test_the_pool_gives_its_idle_descriptors_back_first(session_dir: Path) -> None:
    app = build_app(session_dir)
    other = logged_in(app)
    assert other.get("/read").text == "1"  # its connection is now idle in the pool
    client = logged_in(app)
    sid = sid_of(client)
    with descriptors_exhausted():
        assert client.get("/read").text == "1"
        assert client.post("/count").text == "2"
    assert sid_of(client) == sid


def test_a_new_session_without_descriptors_is_unavailable_not_a_raw_error(
    session_dir: Path,
) -> None:
    client = build_app(session_dir).test_client()
    with descriptors_exhausted():
        response = client.post("/count")
    assert response.json == {"error": "SessionStorageUnavailable", "where": "save"}
    assert session_files(session_dir) == []
    assert [name for name in os.listdir(session_dir) if name.startswith(".tmp-")] == []


def test_a_sweep_without_descriptors_removes_nothing(session_dir: Path) -> None:
    """The sweeper cannot open the files: that proves nothing about them."""
    app = build_app(session_dir)
    for _ in range(3):
        logged_in(app)
    names = session_files(session_dir)
    for name in names:
        os.utime(session_dir / name, (1, 1))  # a trailing hint: the sweep must open them
    with descriptors_exhausted(spare=2):  # the directory's, and one to list it
        report = sweep(session_dir, grace=0)
    assert session_files(session_dir) == names
    assert (report.unopened, report.broken, report.removed) == (3, 0, 0)
