"""A user's sessions through the interface, with real requests and real files.

The session follows its user key (``_user_id``, Flask-Login's) or ``set_user()``: a
login lists it under its user, a logout, a clear or a revoke drops it, a regenerate
carries it to the new id; a request that does none of these runs no statement more;
a revoked session is never served again, even by a request already in flight; the
absolute lifetime ends a session however active, on read and in the sweeper.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from core_helpers import session_path, sid_of, spy_io, statements, stored_meta
from flask import Flask, request
from flask.testing import FlaskClient

from sqlite_session import SqliteSession, SqliteSessionInterface, session
from sqlite_session.janitor import sweep
from sqlite_session.store.user_index import INDEX_NAME


def interface(app: Flask) -> SqliteSessionInterface:
    assert isinstance(app.session_interface, SqliteSessionInterface)
    return app.session_interface


def with_views(app: Flask) -> Flask:
    """Views that log in (the user key or set_user), log out, regenerate and list."""

    @app.post("/login/<user>")
    def login(user: str) -> str:
        session["_user_id"] = user
        session.regenerate()
        return "ok"

    @app.post("/set-user/<user>")
    def set_user(user: str) -> str:
        session["seen"] = True
        session.set_user(user)
        return "ok"

    @app.post("/logout")
    def logout() -> str:
        session.clear()
        return "ok"

    @app.post("/regenerate")
    def regenerate() -> str:
        session.regenerate()
        return "ok"

    @app.route("/count", methods=["GET", "POST"])
    def count() -> str:
        if request.method == "POST":
            session["n"] = session.get("n", 0) + 1
        return str(session.get("n"))

    @app.get("/whoami")
    def whoami() -> str:
        return str(session.get("_user_id"))

    @app.get("/mine")
    def mine() -> dict[str, Any]:
        user = session["_user_id"]
        return {
            "sessions": [
                {"handle": s.handle, "current": s.current, "agent": s.user_agent, "net": s.network}
                for s in interface(app).user_sessions(user)
            ]
        }

    @app.post("/revoke-others")
    def revoke_others() -> str:
        return str(interface(app).revoke_user_sessions(session["_user_id"], keep_current=True))

    return app


@pytest.fixture
def accounts_app(make_app: Callable[..., Flask]) -> Flask:
    return with_views(make_app())


def logged_in(app: Flask, user: str, **headers: str) -> FlaskClient:
    client = app.test_client()
    client.post("/count", headers=headers)
    assert client.post(f"/login/{user}", headers=headers).status_code == 200
    return client


def listed_sids(app: Flask, user: str) -> set[str]:
    return {info.sid for info in interface(app).store.accounts.sessions(user)}


def test_a_login_lists_the_session_under_its_user(accounts_app: Flask, session_dir: Path) -> None:
    alice = logged_in(accounts_app, "alice")
    other = logged_in(accounts_app, "alice")
    assert listed_sids(accounts_app, "alice") == {sid_of(alice), sid_of(other)}
    mine = alice.get("/mine").get_json()["sessions"]
    assert [s["current"] for s in mine].count(True) == 1 and len(mine) == 2
    for entry in mine:
        assert entry["handle"] not in sid_of(alice) + sid_of(other)
        assert entry["agent"] is None and entry["net"] is None  # record_client is off
    assert interface(accounts_app).user_sessions("bob") == []


def test_a_regenerated_session_stays_listed_under_its_new_id(accounts_app: Flask) -> None:
    client = logged_in(accounts_app, "alice")
    before = sid_of(client)
    client.post("/regenerate")
    assert sid_of(client) != before
    assert listed_sids(accounts_app, "alice") == {sid_of(client)}
    assert client.get("/whoami").text == "alice"


def test_a_logout_or_a_user_change_drops_the_session_from_the_list(accounts_app: Flask) -> None:
    client = logged_in(accounts_app, "alice")
    client.post("/login/bob")
    assert listed_sids(accounts_app, "alice") == set()
    assert listed_sids(accounts_app, "bob") == {sid_of(client)}
    client.post("/logout")
    assert listed_sids(accounts_app, "bob") == set()
    assert interface(accounts_app).store.accounts.index.entries("bob") == []


def test_set_user_records_a_user_without_the_user_key(accounts_app: Flask) -> None:
    client = accounts_app.test_client()
    client.post("/set-user/42")
    assert listed_sids(accounts_app, "42") == {sid_of(client)}
    assert len(interface(accounts_app).user_sessions(42)) == 1


def test_record_client_keeps_the_agent_and_a_coarse_network(
    make_app: Callable[..., Flask],
) -> None:
    app = with_views(make_app(record_client=True))
    client = app.test_client()
    client.post("/count")
    client.post(
        "/login/alice",
        headers={"User-Agent": "Firefox/140"},
        environ_base={"REMOTE_ADDR": "192.0.2.77"},
    )
    [entry] = client.get("/mine").get_json()["sessions"]
    assert entry["agent"] == "Firefox/140" and entry["net"] == "192.0.2.0/24"


def test_revoke_one_all_others_or_all(accounts_app: Flask) -> None:
    phone, laptop, tablet = (logged_in(accounts_app, "alice") for _ in range(3))
    api = interface(accounts_app)
    [tablet_info] = [s for s in api.store.accounts.sessions("alice") if s.sid == sid_of(tablet)]
    assert api.revoke_session("alice", tablet_info.handle)
    assert not api.revoke_session("bob", tablet_info.handle)
    assert tablet.get("/whoami").text == "None"
    assert laptop.post("/revoke-others").text == "1"  # the phone; not the laptop itself
    assert phone.get("/whoami").text == "None"
    assert laptop.get("/whoami").text == "alice"
    laptop_sid = sid_of(laptop)
    assert listed_sids(accounts_app, "alice") == {laptop_sid}
    assert api.revoke_user_sessions("alice") == 1
    assert not session_path(Path(api.path), laptop_sid).exists()
    assert laptop.get("/whoami").text == "None"


def test_a_request_in_flight_cannot_bring_a_revoked_session_back(
    make_app: Callable[..., Flask],
) -> None:
    app = with_views(make_app())
    inside, release = threading.Event(), threading.Event()

    @app.post("/slow")
    def slow() -> str:
        session.get("_user_id")  # the session is open, its connection held
        inside.set()
        release.wait(10)
        session["written_after_revoke"] = True
        return "ok"

    client = logged_in(app, "alice")
    sid = sid_of(client)
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(client.post("/slow").status_code))
    worker.start()
    assert inside.wait(10)
    assert interface(app).revoke_user_sessions("alice") == 1
    assert not session_path(Path(interface(app).path), sid).exists()  # gone when it returns
    release.set()
    worker.join(10)
    assert result == [200]
    assert not session_path(Path(interface(app).path), sid).exists()
    assert client.get("/whoami").text == "None"
    assert listed_sids(app, "alice") == set()


def test_requests_that_do_not_change_the_user_pay_nothing(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    """A logged-in session's read and write requests run the same statements as an
    anonymous session's, and never open the index."""
    with statements() as seen:
        app = with_views(make_app(connection_cache_size=0))
        anonymous = app.test_client()
        anonymous.post("/count")
        user = logged_in(app, "alice")
        runs: dict[str, list[str]] = {}
        for name, client in (("anonymous", anonymous), ("logged in", user)):
            for method in ("GET", "POST"):
                seen.clear()
                with spy_io(session_dir) as io:
                    assert client.open("/count", method=method).status_code == 200
                runs[f"{name} {method}"] = list(seen)
                assert not [e for e in io.events if INDEX_NAME in e[1]], io.events
    assert runs["anonymous GET"] == runs["logged in GET"]
    assert runs["anonymous POST"] == runs["logged in POST"]
    account = re.compile(r"\b(user|handle|established_at|entry)\b")
    assert not [sql for run in runs.values() for sql in run if account.search(sql)]


def test_absolute_lifetime_ends_an_active_session_on_read_and_in_the_sweeper(
    session_dir: Path,
) -> None:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test secret",
        SQLITE_SESSION_PATH=str(session_dir),
        SQLITE_SESSION_ABSOLUTE_LIFETIME=timedelta(seconds=1.5),
        SQLITE_SESSION_REFRESH_FRACTION=0.0,
    )
    SqliteSession(app)
    with_views(app)
    client = logged_in(app, "alice")
    sid = sid_of(client)
    established = time.time()
    meta = stored_meta(session_dir, sid)
    assert meta["expires_at"] <= established + 1.5  # capped, though the lifetime is 31 days
    deadline = time.time() + 1.6
    while time.time() < deadline:  # active all along: every request refreshes and writes
        assert client.post("/count").status_code == 200
        time.sleep(0.1)
    assert client.get("/whoami").text == "None"  # dead on read
    other = logged_in(app, "bob")
    report = sweep(session_dir, now=time.time() + 5)  # past the mirror and its lstat grace
    assert report.removed >= 1
    assert not session_path(session_dir, sid_of(other)).exists()


def test_the_absolute_lifetime_restarts_at_a_login(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    app = with_views(make_app(absolute_lifetime=3600))
    client = app.test_client()
    client.post("/count")
    first = stored_meta(session_dir, sid_of(client))["expires_at"]
    time.sleep(0.05)
    client.post("/login/alice")
    assert stored_meta(session_dir, sid_of(client))["expires_at"] > first
