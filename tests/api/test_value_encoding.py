"""Values of any size: the json fast paths and the tracking are exact, and their per-element
work is done in C.

The default serializer encodes values that need no tag with :mod:`json` directly and
decodes text without a tag with :func:`json.loads`; the tracking wraps nested containers
a level at a time. These tests check, for arbitrary nested values of every type Flask's
cookie session stores, that the bytes and the decoded values are Flask's own, that a
change at any depth reports (and persists through real requests), and that the number of
Python calls made for a value does not grow with its number of elements.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import Any

import flask.json.tag
import pytest
from flask import Flask, session
from flask.json.tag import TaggedJSONSerializer as FlaskTaggedJSON
from flask.testing import FlaskClient
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from sqlite_session import TaggedJSONSerializer, serializer, tracking
from sqlite_session.tracking import TrackedDict, TrackedList, track, untrack

ours = TaggedJSONSerializer()
flasks = FlaskTaggedJSON()
APP = Flask(__name__)  # Flask's tagger writes through the app's JSON provider

TAG_LIKE_KEYS = [" t", " di", " b", " m", " u", " d", " t__", " di__", "t", " x"]
keys = st.one_of(st.text(max_size=4), st.sampled_from(TAG_LIKE_KEYS), st.integers(-3, 3))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
zones = st.sampled_from([timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))])
tagged = st.one_of(
    st.binary(max_size=6),
    st.uuids(),
    st.text(max_size=6).map(Markup),
    st.datetimes(datetime(1990, 1, 1), datetime(2090, 1, 1), timezones=zones),
)
values = st.recursive(
    st.one_of(scalars, tagged),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
    ),
    max_leaves=24,
)
containers = st.one_of(
    st.lists(values, min_size=1, max_size=4),
    st.dictionaries(keys, values, min_size=1, max_size=4),
    st.lists(values, min_size=1, max_size=3).map(tuple),
)


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (a tracked dict counts as a dict), the
    same key order, and NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if plain_type(a) is not plain_type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


def plain_type(value: Any) -> type:
    return {TrackedDict: dict, TrackedList: list}.get(type(value), type(value))


def outcome(action: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "value", action()
    except (TypeError, ValueError) as exc:
        return "error", TypeError if isinstance(exc, ValueError) else type(exc)


def storable(value: Any) -> bool:
    with APP.app_context():
        return outcome(lambda: ours.dumps(value))[0] == "value"


@given(values)
@example({" t": [1, 2]})
@example([{" di": (1,)}, {" t": 1, "a": 2}])
@example({1: "int key", "a": "str key"})  # Flask refuses to sort mixed keys: so do we
@example([Markup("<b>"), "<b>", (["in a tuple"],)])
@example({"k": ['{" t":[1]}', " a string with a space", '" t"']})
def test_encoding_is_flasks_byte_for_byte(value: Any) -> None:
    with APP.app_context():
        want = outcome(lambda: flasks.dumps(value).encode("utf-8"))
        got = outcome(lambda: ours.dumps(value))
    assert got == want


@given(values.filter(storable))
@example(['{" t":[1]}', {" t": [1]}])
def test_decoding_gives_flasks_values_exactly(value: Any) -> None:
    with APP.app_context():  # (as in a request: Flask's provider then sorts the keys)
        data = flasks.dumps(value).encode("utf-8")  # as Flask, and every older version, wrote it
        want = flasks.loads(data.decode("utf-8"))
        ours_data = ours.dumps(value)
    assert same(ours.loads(data), want)
    assert same(ours.loads(ours_data), want)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ('{" t":[1,2]}', (1, 2)),
        ('{ " t" : [1, 2] }', (1, 2)),  # spaces another JSON writer might put in
        ('[{\n" b":"AA=="}]', [b"\x00"]),
        ('{"a":" t","b":{" x":1}}', {"a": " t", "b": {" x": 1}}),
        ('{"a":"{\\" t\\":[1]}"}', {"a": '{" t":[1]}'}),
    ],
)
def test_tags_are_found_in_any_json_spelling(text: str, want: Any) -> None:
    assert same(ours.loads(text.encode("utf-8")), want)


def reachable_containers(value: Any) -> Iterator[Any]:
    """Every dict and list inside ``value`` (itself included), through tuples too."""
    if isinstance(value, (dict, list)):
        yield value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from reachable_containers(item)


@given(values.filter(storable), st.data())
def test_every_container_at_any_depth_is_tracked_and_reports_its_change(
    value: Any, data: st.DataObject
) -> None:
    with APP.app_context():
        loaded = ours.loads(ours.dumps(value))
    changes: list[int] = []
    tracked = track(loaded, lambda: changes.append(1))
    assert same(untrack(tracked), loaded) and same(tracked, loaded)
    found = list(reachable_containers(tracked))
    assert all(type(c) in (TrackedDict, TrackedList) for c in found)
    assert changes == []
    if found:
        target = data.draw(st.sampled_from(found))
        target.append(0) if isinstance(target, list) else target.update(new=0)
        assert changes == [1]


def container_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The index/key paths from ``value`` to each dict or list inside it (or itself)."""
    if isinstance(value, (dict, list)):
        yield path
    if isinstance(value, (dict, list, tuple)):
        for label, item in value.items() if isinstance(value, dict) else enumerate(value):
            yield from container_paths(item, (*path, label))


def change_at(value: Any, path: tuple[Any, ...]) -> None:
    """Append to the list, or set a key in the dict, that ``path`` leads to."""
    for label in path:
        value = value[label]
    if isinstance(value, list):
        value.append("changed")
    else:
        value["changed"] = True


@pytest.fixture(scope="module")
def scratch_app(tmp_path_factory: pytest.TempPathFactory) -> tuple[Flask, dict[str, Any]]:
    """One app for many examples: each uses a new client, so a new session."""
    from sqlite_session import SqliteSessionInterface

    app = Flask(__name__)
    app.config.update(SECRET_KEY="test secret", TESTING=True)
    app.session_interface = SqliteSessionInterface(tmp_path_factory.mktemp("values"))
    case: dict[str, Any] = {}

    @app.get("/seed")
    def seed() -> str:
        session["v"] = case["value"]
        return ""

    @app.get("/change")
    def change() -> str:
        change_at(session["v"], case["path"])
        return ""

    @app.get("/read")
    def read() -> str:
        case["read"] = untrack(session["v"])
        return ""

    return app, case


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(containers.filter(storable), st.data())
def test_a_change_at_any_depth_persists_without_marking_the_session(
    scratch_app: tuple[Flask, dict[str, Any]], value: Any, data: st.DataObject
) -> None:
    paths = list(container_paths(round_trip(value)))
    assume(paths)
    assert_change_persists(scratch_app, value, data.draw(st.sampled_from(paths)))


def test_a_change_forty_levels_down_inside_a_tuple_persists(
    scratch_app: tuple[Flask, dict[str, Any]],
) -> None:
    deep: Any = []
    for level in range(40):
        deep = {"level": level, "down": [deep, (level, [level])]}
    value = ("top", deep)
    assert_change_persists(scratch_app, value, (1, *(("down", 0) * 40)))
    assert_change_persists(scratch_app, value, (1, "down", 1, 1))  # a list in a tuple


def round_trip(value: Any) -> Any:
    """``value`` as a later request reads it back (as from Flask's cookie session)."""
    with APP.app_context():
        return ours.loads(ours.dumps(value))


def assert_change_persists(
    scratch_app: tuple[Flask, dict[str, Any]], value: Any, path: tuple[Any, ...]
) -> None:
    """Store ``value``, change the container at ``path`` in place, read it back."""
    app, case = scratch_app
    expected = round_trip(value)
    change_at(expected, path)
    case.update(value=value, path=path)
    client = app.test_client()
    for route in ("/seed", "/change", "/read"):
        assert client.get(route).status_code == 200
    assert same(case["read"], round_trip(expected))


# -- the per-element work is done in C ------------------------------------------------------


def calls_in_value_code(client: FlaskClient, path: str) -> int:
    """Python calls made by the serializer, the tracking and Flask's tagger in a request."""
    modules = {serializer.__file__, tracking.__file__, flask.json.tag.__file__}
    calls = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call" and frame.f_code.co_filename in modules:
            calls += 1

    sys.setprofile(profile)
    try:
        response = client.get(path)
    finally:
        sys.setprofile(None)
    assert response.status_code == 200
    return calls


def ints(n: int) -> list[int]:
    return [random.randrange(10**9) for _ in range(n)]


def records(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"item {i}", "price": i / 4, "qty": 1, "gift": i % 2 == 0}
            for i in range(n)]  # fmt: skip


@pytest.mark.parametrize(
    ("small", "large"),
    [
        (ints(10), ints(1000)),
        ([f"{random.getrandbits(40):010x}" for _ in range(10)],
         [f"{random.getrandbits(40):010x}" for _ in range(1000)]),
        (records(10), records(200)),
        ({"cart": [[1, 2]], "seen": ints(3)}, {"cart": [ints(1000)], "seen": ints(3000)}),
    ],
    ids=["ints", "strings", "records", "mixed levels"],
)  # fmt: skip
def test_reading_and_changing_a_value_makes_no_python_call_per_element(
    app: Flask, small: Any, large: Any
) -> None:
    """As many calls for the large value as for the small one: the elements are handled in
    C (a level of mixed kinds costs a call per container in it, none per scalar)."""

    @app.get("/seed")
    def seed() -> str:
        session["small"], session["large"] = small, large
        return ""

    @app.get("/<action>/<key>")
    def use(action: str, key: str) -> str:
        value = session[key]
        if action == "change":  # in place, saved without reassignment
            target = value if isinstance(value, list) else value["seen"]
            target.append(1)
            target.pop()
        return str(len(value))

    client = app.test_client()
    client.get("/seed")
    for path in ("/read", "/change"):
        client.get(f"{path}/small")  # warm up
        assert calls_in_value_code(client, f"{path}/large") == calls_in_value_code(
            client, f"{path}/small"
        )
