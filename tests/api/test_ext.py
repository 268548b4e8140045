"""The Flask extension form and its configuration keys, as Flask extensions do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from core_helpers import ROOT, session_files
from flask import Flask, session

from sqlite_session import SessionTooLarge, SqliteSession, SqliteSessionInterface
from sqlite_session.ext import PATH_KEY, interface_options


def bare_app(**config: object) -> Flask:
    """A Flask app with a secret key, the given config and two session views."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test secret", TESTING=True, **config)

    @app.get("/set/<value>")
    def set_(value: str) -> str:
        session["value"] = value
        return "ok"

    @app.get("/get")
    def get() -> str:
        return str(session.get("value"))

    return app


def test_extension_installs_the_interface(tmp_path: Path) -> None:
    app = bare_app(SQLITE_SESSION_PATH=str(tmp_path / "s"))
    SqliteSession(app)
    assert isinstance(app.session_interface, SqliteSessionInterface)
    assert app.extensions["sqlite_session"] is app.session_interface
    client = app.test_client()
    client.get("/set/apple")
    assert client.get("/get").text == "apple"
    assert len(session_files(tmp_path / "s")) == 1


def test_one_extension_many_apps_with_their_own_directories(tmp_path: Path) -> None:
    """The application-factory form: one extension object, configured per app."""
    ext = SqliteSession()
    apps = [bare_app(SQLITE_SESSION_PATH=str(tmp_path / name)) for name in ("a", "b")]
    for app in apps:
        assert ext.init_app(app) is app.session_interface
    apps[0].test_client().get("/set/x")
    assert len(session_files(tmp_path / "a")) == 1
    assert session_files(tmp_path / "b") == []


def test_options_come_from_config(tmp_path: Path) -> None:
    app = bare_app(
        SQLITE_SESSION_PATH=str(tmp_path / "s"),
        SQLITE_SESSION_NODE="web1",
        SQLITE_SESSION_MAX_VALUE_BYTES=64,
    )
    SqliteSession(app)

    @app.get("/big")
    def big() -> str:
        try:
            session["big"] = "x" * 1000
        except SessionTooLarge as exc:
            return f"refused {exc.key}"
        return "stored"

    client = app.test_client()
    assert client.get("/set/y").headers["Set-Cookie"].startswith("session=web1.")
    assert client.get("/big").text == "refused big"


def test_every_option_has_a_key_and_accepts_its_default(tmp_path: Path) -> None:
    """Keys are derived from the signature: each maps to a real option, all accepted."""
    options = interface_options()
    for key in ("LOCK_TIMEOUT", "STRICT", "MAX_VALUE_BYTES", "NODE", "SAVE_ON_ERROR"):
        assert "SQLITE_SESSION_" + key in options
    defaults = {key: p.default for key, p in options.items() if p.default is not p.empty}
    assert len(defaults) == len(options)  # every option has a default to document
    app = bare_app(SQLITE_SESSION_PATH=str(tmp_path / "s"), **defaults)
    SqliteSession(app)
    app.test_client().get("/set/z")
    assert len(session_files(tmp_path / "s")) == 1


def test_unknown_key_is_an_error_naming_the_likely_key(tmp_path: Path) -> None:
    app = bare_app(SQLITE_SESSION_PATH=str(tmp_path / "s"), SQLITE_SESSION_LOCK_TIMOUT=1)
    with pytest.raises(ValueError, match=r"LOCK_TIMOUT \(did you mean SQLITE_SESSION_LOCK_TIMEOUT"):
        SqliteSession(app)
    assert not isinstance(app.session_interface, SqliteSessionInterface)


def test_missing_path_is_an_error() -> None:
    with pytest.raises(ValueError, match="SQLITE_SESSION_PATH is not set"):
        SqliteSession(bare_app())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("SQLITE_SESSION_STRICT", "false"),  # a raw environment string is truthy
        ("SQLITE_SESSION_LOCK_TIMEOUT", "5"),
        ("SQLITE_SESSION_MAX_KEYS", 1.5),
        ("SQLITE_SESSION_NODE", 7),
    ],
)
def test_wrongly_typed_value_is_an_error(tmp_path: Path, key: str, value: object) -> None:
    app = bare_app(SQLITE_SESSION_PATH=str(tmp_path / "s"), **{key: value})
    with pytest.raises(ValueError, match=f"{key} must be"):
        SqliteSession(app)


def test_prefixed_environment_variables_are_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``app.config.from_prefixed_env()`` turns FLASK_SQLITE_SESSION_* into typed values."""
    monkeypatch.setenv("FLASK_SQLITE_SESSION_PATH", str(tmp_path / "env"))
    monkeypatch.setenv("FLASK_SQLITE_SESSION_STRICT", "true")
    monkeypatch.setenv("FLASK_SQLITE_SESSION_LOCK_TIMEOUT", "2.5")
    monkeypatch.setenv("FLASK_SQLITE_SESSION_MAX_KEYS", "null")
    app = bare_app()
    app.config.from_prefixed_env()
    SqliteSession(app)
    app.test_client().get("/set/e")
    assert len(session_files(tmp_path / "env")) == 1


def test_readme_table_lists_every_key_with_its_default() -> None:
    """The README's config table and the interface's signature cannot drift apart."""
    text = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(SQLITE_SESSION_\w+)` \| `([^`]*)` \|", text, re.MULTILINE))
    expected = {PATH_KEY: "(required)"}
    expected.update({key: repr(p.default) for key, p in interface_options().items()})
    missing = {key: default for key, default in expected.items() if rows.get(key) != default}
    assert not missing, "README table rows to add or fix:\n" + "\n".join(
        f"| `{key}` | `{default}` | ... |" for key, default in missing.items()
    )
    assert set(rows) == set(expected)
