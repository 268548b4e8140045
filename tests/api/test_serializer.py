"""The default serializer: Flask's tagged JSON, byte for byte, and never pickle.

It round-trips what Flask's cookie session round-trips, rejects what it cannot store
where the developer can see it (a ``TypeError`` naming the key, at the assignment), and
never unpickles; its shortcut for plain scalars gives exactly Flask's bytes.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import apsw
import pytest
from core_helpers import session_path, sid_of, stored_rows
from flask import Flask, session
from flask.json.tag import TaggedJSONSerializer as FlaskTaggedJSON
from flask.sessions import SecureCookieSessionInterface
from hypothesis import example, given
from hypothesis import strategies as st
from markupsafe import Markup

from sqlite_session import PickleSerializer, TaggedJSONSerializer

VALUES: dict[str, Any] = {
    "str": "naïve ☃",
    "int": 2**70,
    "float": 1.5,
    "bool": True,
    "none": None,
    "list": [1, "two", [3]],
    "dict": {"a": {"b": [1, 2]}, "n": None},
    "tuple": (1, (2, "three")),
    "bytes": b"\xff\x00raw",
    "markup": Markup("<em>safe</em>"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "aware datetime": datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2))),
    "utc datetime": datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
    "dict with tuple": {"t": (1, 2)},
    "empty": {},
}


def round_trip(app: Flask) -> dict[str, tuple[type, Any]]:
    """Store VALUES in one request, read them back in the next: (type, value) per key."""
    seen: dict[str, tuple[type, Any]] = {}

    @app.get("/store")
    def store() -> str:
        for key, value in VALUES.items():
            session[key] = value
        return ""

    @app.get("/load")
    def load() -> str:
        for key in VALUES:
            value = session[key]
            kind = type(value)
            if kind.__module__ == "sqlite_session.tracking":
                kind = kind.__mro__[1]  # the tracked dict/list stands for a plain one
            seen[key] = (kind, value)
        return ""

    client = app.test_client()
    client.get("/store")
    client.get("/load")
    return seen


def test_round_trip_equals_flasks_cookie_session(make_app: Callable[..., Flask]) -> None:
    ours = round_trip(make_app())
    cookie_app = Flask(__name__)
    cookie_app.config.update(SECRET_KEY="test secret", TESTING=True)
    assert isinstance(cookie_app.session_interface, SecureCookieSessionInterface)
    flasks = round_trip(cookie_app)
    assert set(ours) == set(VALUES)
    for key in VALUES:
        assert ours[key] == flasks[key], key
    # and what comes back is the value that went in (datetimes as aware instants)
    for key, value in VALUES.items():
        assert ours[key][1] == value, key
    assert ours["markup"][0] is Markup and ours["bytes"][0] is bytes
    assert ours["tuple"][0] is tuple


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, Fraction(1, 3), {"nested": {"deep": object()}}],
    ids=["object", "set", "fraction", "nested object"],
)
def test_unstorable_value_raises_type_error_naming_the_key_in_the_view(
    app: Flask, value: Any
) -> None:
    @app.get("/assign")
    def assign() -> str:
        with pytest.raises(TypeError, match="'cart'") as info:
            session["cart"] = value
        assert "cart" not in session
        return str(info.value)

    response = app.test_client().get("/assign")
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


def test_a_nested_value_that_becomes_unstorable_fails_at_save_naming_the_key(
    app: Flask, session_dir: Path
) -> None:
    @app.get("/seed")
    def seed() -> str:
        session["prefs"] = {"theme": "dark"}
        session["ok"] = 1
        return ""

    @app.get("/spoil")
    def spoil() -> str:
        session["ok"] = 2
        session["prefs"]["callback"] = print  # a function: not storable
        return "view returned"

    client = app.test_client()
    client.get("/seed")
    before = stored_rows(session_dir, sid_of(client))
    with pytest.raises(TypeError, match="'prefs'"):
        client.get("/spoil")
    assert stored_rows(session_dir, sid_of(client)) == before  # nothing half-saved


class Detonator:
    """Unpickling this creates a marker file: proof that stored data was executed."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.marker,))


def plant_pickle(session_dir: Path, sid: str, key: str, marker: Path) -> None:
    conn = apsw.Connection(str(session_path(session_dir, sid)))
    try:
        payload = pickle.dumps(Detonator(str(marker)))
        conn.execute("UPDATE kv SET value = ? WHERE key = ?", (payload, key))
    finally:
        conn.close()


@pytest.mark.parametrize("serializer", [None, PickleSerializer()], ids=["default", "pickle"])
def test_a_stored_pickle_runs_only_when_pickle_was_chosen(
    make_app: Callable[..., Flask],
    session_dir: Path,
    tmp_path: Path,
    serializer: PickleSerializer | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(serializer=serializer)

    @app.get("/seed")
    def seed() -> str:
        session["v"] = "plain"
        session["keep"] = "kept"
        return ""

    @app.get("/read")
    def read() -> str:
        return f"{session.get('v', 'dropped')!r} {session['keep']}"

    client = app.test_client()
    client.get("/seed")
    marker = tmp_path / "pickle-ran"
    plant_pickle(session_dir, sid_of(client), "v", marker)
    response = client.get("/read")
    assert response.status_code == 200
    if serializer is None:
        assert response.text == "'dropped' kept"
        assert not marker.exists()
        assert any("undecodable" in r.getMessage() for r in caplog.records)
    else:
        assert marker.is_dir()  # the same payload does run under the opt-in


def test_pickle_serializer_stores_arbitrary_objects(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(serializer=PickleSerializer())

    @app.get("/store")
    def store() -> str:
        session["set"] = {1, 2}
        session["fraction"] = Fraction(1, 3)
        return ""

    @app.get("/load")
    def load() -> str:
        assert session["set"] == {1, 2} and session["fraction"] == Fraction(1, 3)
        return "ok"

    client = app.test_client()
    client.get("/store")
    assert client.get("/load").text == "ok"


def test_values_are_stored_as_tagged_json_text(app: Flask, session_dir: Path) -> None:
    @app.get("/store")
    def store() -> str:
        session["t"] = (1, 2)
        session["b"] = b"\x01"
        return ""

    client = app.test_client()
    client.get("/store")
    rows = stored_rows(session_dir, sid_of(client))
    assert rows == {"t": b'{" t":[1,2]}', "b": b'{" b":"AQ=="}'}


scalars = st.one_of(st.text(), st.integers(), st.floats(), st.booleans(), st.none())
ours = TaggedJSONSerializer()
flasks = FlaskTaggedJSON()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


@given(scalars)
def test_a_scalar_encodes_as_flask_encodes_it_and_round_trips(value: Any) -> None:
    with Flask(__name__).app_context():  # Flask then encodes through the app's provider
        assert ours.dumps(value) == flasks.dumps(value).encode("utf-8")
    assert _same(ours.loads(ours.dumps(value)), value)


@given(st.lists(scalars, max_size=5))
def test_a_list_of_scalars_round_trips(value: list[Any]) -> None:
    decoded = ours.loads(ours.dumps(value))
    assert len(decoded) == len(value) and all(map(_same, decoded, value))


def test_stored_tagged_values_are_still_untagged() -> None:
    for value in [("a", "{"), {"k": b"\x00{"}, ["{", (1, 2)], "{ not an object }"]:
        data = flasks.dumps(value).encode("utf-8")  # as Flask (or an older version) stored it
        assert ours.loads(data) == value


def _json_or_error(text: str) -> tuple[str, Any]:
    try:
        return "value", json.loads(text)
    except ValueError as exc:
        return "error", type(exc)


def _ours_or_error(text: str) -> tuple[str, Any]:
    try:
        return "value", ours.loads(text.encode("utf-8"))
    except ValueError as exc:
        return "error", type(exc)


json_like = st.one_of(
    st.text(),
    st.text().map(lambda t: f'"{t}"'),
    st.text(alphabet='0123456789-+.eE "\\\t\n\x00\x1fu{}[]').map(str.strip),
    st.from_regex(r"\A-?0*[0-9]{0,30}\Z"),
    st.sampled_from(["true", "false", "null", "True", "nul", " true", "1 ", "1_0", "٣", "²"]),
).filter(lambda t: "{" not in t)  # with a brace, Flask's tagger decodes it, as before


@given(json_like)
@example('"a"b"')
@example('"a\\"b"')
@example('"\x00"')
@example('"\u00a0"')
@example('"')
@example('""')
@example('"\u00e9"')
@example("01")
@example("-1")
@example("0")
def test_a_plain_value_decodes_exactly_as_json_loads_decodes_it(text: str) -> None:
    """The direct decoding of common scalars is only a shortcut: same value, same refusal."""
    want, got = _json_or_error(text), _ours_or_error(text)
    assert want[0] == got[0]
    if want[0] == "value":
        assert _same(got[1], want[1]) or (want[1] == got[1] and type(want[1]) is type(got[1]))
