"""Every option is checked for type and range when the interface is built.

Through the constructor and through ``SqliteSession(app)`` alike, a bad value raises
``ValueError`` naming the option (its config key for the extension), at start-up
rather than at the first request (a serializer without ``dumps`` used to be a 500 at
the first write; ``sweep_every=0`` silently started no sweeper).
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.json.tag import TaggedJSONSerializer as FlaskTaggedJSON

from sqlite_session import SqliteSession, SqliteSessionInterface
from sqlite_session.ext import interface_options
from sqlite_session.options import RULES

BAD_VALUES: dict[str, list[Any]] = {
    # Flask's own TaggedJSONSerializer and the json module return str, not bytes.
    "serializer": ["pickle", b"json", 42, FlaskTaggedJSON(), json],
    "save_on_error": ["false", 1],
    "lock_timeout": [-1, 0, 0.0001, 3e6, "5", True, math.inf, math.nan],
    "strict": ["true", 0],
    "max_value_bytes": [0, -5, 1.5, "1000", True],
    "max_session_bytes": [0, 100, "8M", 2.0**20],
    "max_keys": [0, -1, 1.5, False],
    "node": [7, b"web1"],
    "regenerate_grace": [-1, math.inf, "60"],
    "refresh_fraction": [-0.1, 1, 1.5, "0.1", math.nan],
    "connection_cache_size": [-1, 1.5, "128", None],
    "allow_unsafe_directory": ["yes", 1],
    "sweep_every": [0, -3, "60", math.inf, False],
    "flask_login": ["false", 0, None],
    "user_key": ["", 7, None, b"_user_id"],
    "record_client": ["yes", 1, None],
    "absolute_lifetime": [0, -1, "3600", math.inf, True, timedelta(0), timedelta(seconds=-5)],
    "anonymous_lifetime": [0, -1, "3600", math.nan, False, timedelta(0)],
    "reserve_fraction": [-0.1, 1, 1.5, None, "0.1", math.nan, True],
}
CASES = [(name, value) for name, values in BAD_VALUES.items() for value in values]


def test_every_option_has_a_rule_and_bad_values() -> None:
    options = {p.name for p in interface_options().values()}
    assert set(RULES) == options
    assert set(BAD_VALUES) == options


@pytest.mark.parametrize(("name", "value"), CASES, ids=[f"{n}={v!r}" for n, v in CASES])
def test_a_bad_value_fails_the_constructor_naming_the_option(
    tmp_path: Path, name: str, value: Any
) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be .*, not "):
        SqliteSessionInterface(tmp_path / "s", **{name: value})
    assert not (tmp_path / "s").exists()  # checked before anything was built


@pytest.mark.parametrize(("name", "value"), CASES, ids=[f"{n}={v!r}" for n, v in CASES])
def test_a_bad_value_fails_init_app_naming_the_config_key(
    tmp_path: Path, name: str, value: Any
) -> None:
    app = Flask(__name__)
    key = "SQLITE_SESSION_" + name.upper()
    app.config.update(SECRET_KEY="k", SQLITE_SESSION_PATH=str(tmp_path / "s"), **{key: value})
    with pytest.raises(ValueError, match=rf"^{key} must be .*, not "):
        SqliteSession(app)
    assert "sqlite_session" not in app.extensions


class Custom:
    """A serializer of the app's own: anything with dumps and loads will do."""

    def dumps(self, value: Any) -> bytes:
        return repr(value).encode()

    def loads(self, data: bytes) -> Any:
        return data.decode()


@pytest.mark.parametrize(
    "options",
    [
        {"serializer": Custom()},
        {"lock_timeout": 1, "regenerate_grace": 0, "refresh_fraction": 0.99},
        {"max_value_bytes": None, "max_session_bytes": None, "max_keys": None},
        {"max_session_bytes": 4096, "max_keys": 1, "connection_cache_size": 0},
        {"sweep_every": 0.5, "node": "web1"},
    ],
)
def test_edge_values_in_range_are_accepted(tmp_path: Path, options: dict[str, Any]) -> None:
    interface = SqliteSessionInterface(tmp_path / "s", **options)
    assert (tmp_path / "s").is_dir()
    assert interface.path == str(tmp_path / "s")
