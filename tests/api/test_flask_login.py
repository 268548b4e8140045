"""Flask-Login, when installed: ``login_user()`` gives the session a new id and
``logout_user()`` ends the old one (OWASP ASVS 3.2.1 and 3.3.1), with the real
Flask-Login and real session files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import flask
import flask_login
from core_helpers import COOKIE, cookie_value, session_path, sid_of
from flask import Flask, flash, get_flashed_messages, session
from flask.testing import FlaskClient

from sqlite_session import SqliteSessionInterface


class User(flask_login.UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def login_app(session_dir: Path, **options: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test secret", TESTING=True)
    app.session_interface = SqliteSessionInterface(session_dir, **options)
    manager = flask_login.LoginManager(app)
    manager.user_loader(User)

    @app.get("/cart/<item>")
    def cart(item: str) -> str:
        session["cart"] = item
        return "ok"

    @app.get("/login/<user_id>")
    def login(user_id: str) -> str:
        flask_login.login_user(User(user_id), remember=flask.request.args.get("remember") == "1")
        return "in"

    @app.get("/logout")
    def logout() -> str:
        flask_login.logout_user()
        flash("bye")
        return "out"

    @app.get("/whoami")
    def whoami() -> str:
        user = flask_login.current_user
        who = user.id if user.is_authenticated else "anonymous"
        return f"{who} cart={session.get('cart')} flashes={get_flashed_messages()}"

    return app


def planted_client(app: Flask, sid_cookie: str) -> FlaskClient:
    client = app.test_client()
    client.set_cookie(COOKIE, sid_cookie)
    return client


def test_login_user_gives_the_session_a_new_id(session_dir: Path) -> None:
    app = login_app(session_dir)
    client = app.test_client()
    client.get("/cart/apple")
    before = cookie_value(client)
    assert before is not None
    client.get("/login/alice")
    assert cookie_value(client) != before
    assert client.get("/whoami").text == "alice cart=apple flashes=[]"
    # The id an attacker could have planted before the login leads to nothing logged in.
    assert planted_client(app, before).get("/whoami").text.startswith("anonymous cart=None")


def test_the_option_turns_it_off(session_dir: Path) -> None:
    app = login_app(session_dir, flask_login=False)
    client = app.test_client()
    client.get("/cart/apple")
    before = cookie_value(client)
    client.get("/login/alice")
    assert cookie_value(client) == before


def test_logout_user_ends_the_old_id_and_writes_after_it_under_a_new_one(
    session_dir: Path,
) -> None:
    app = login_app(session_dir)
    client = app.test_client()
    client.get("/login/alice")
    logged_in = cookie_value(client)
    assert logged_in is not None
    old_sid = sid_of(client)
    client.get("/logout")
    assert not session_path(session_dir, old_sid).exists()
    after = cookie_value(client)
    assert after is not None and after != logged_in  # the flash lives under a new id
    assert client.get("/whoami").text == "anonymous cart=None flashes=['bye']"
    replayed = planted_client(app, logged_in).get("/whoami").text
    assert replayed == "anonymous cart=None flashes=[]"


def test_logout_still_deletes_the_remember_me_cookie(session_dir: Path) -> None:
    app = login_app(session_dir)
    client = app.test_client()
    client.get("/login/alice?remember=1")
    assert client.get_cookie("remember_token") is not None
    client.get("/logout")
    assert client.get_cookie("remember_token") is None
    client.delete_cookie(COOKIE)
    assert client.get("/whoami").text.startswith("anonymous")


def test_a_remember_me_login_gives_the_session_a_new_id(session_dir: Path) -> None:
    app = login_app(session_dir)
    client = app.test_client()
    client.get("/login/alice?remember=1")
    remember = client.get_cookie("remember_token")
    assert remember is not None
    # A victim who holds the remember-me cookie and a session id planted by an attacker.
    attacker = app.test_client()
    attacker.get("/cart/bait")
    planted = cookie_value(attacker)
    assert planted is not None
    victim = planted_client(app, planted)
    victim.set_cookie("remember_token", remember.value)
    assert victim.get("/whoami").text.startswith("alice cart=bait")
    assert cookie_value(victim) != planted
    assert attacker.get("/whoami").text.startswith("anonymous cart=None")


def listed(app: Flask, user: str) -> set[str]:
    interface = app.session_interface
    assert isinstance(interface, SqliteSessionInterface)
    return {info.sid for info in interface.store.accounts.sessions(user)}


def test_login_lists_the_session_and_logout_ends_and_unlists_it(session_dir: Path) -> None:
    """login_user(): a new id, listed under the user; logout_user(): the old id leads to
    nothing and is no longer listed (the flash after it lives under a fresh id)."""
    app = login_app(session_dir)
    client = app.test_client()
    client.get("/cart/apple")
    anonymous = sid_of(client)
    client.get("/login/alice")
    logged_in = sid_of(client)
    assert logged_in != anonymous
    assert listed(app, "alice") == {logged_in}
    client.get("/logout")
    assert not session_path(session_dir, logged_in).exists()
    assert listed(app, "alice") == set()
    assert (
        planted_client(app, cookie_value(client) or "").get("/whoami").text.startswith("anonymous")
    )


def test_revoke_from_the_cli_logs_the_user_out_at_the_next_request(session_dir: Path) -> None:
    app = login_app(session_dir)
    phone, laptop = app.test_client(), app.test_client()
    phone.get("/login/alice")
    laptop.get("/login/alice")
    assert laptop.get("/whoami").text.startswith("alice")
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "sqlite-session"),
            "revoke",
            str(session_dir),
            "--user",
            "alice",
            "--all",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "2" in result.stdout
    assert phone.get("/whoami").text.startswith("anonymous")
    assert laptop.get("/whoami").text.startswith("anonymous")
    assert listed(app, "alice") == set()
