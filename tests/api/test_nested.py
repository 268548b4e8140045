"""Mutations of stored containers persist without ``session.modified = True``.

Each case stores a value in one request, mutates it in place in a second request and
reads it back in a third, through three separate requests and the real file. Tracked
values do not keep their session alive: no reference cycle per request.
"""

from __future__ import annotations

import gc
import json
import weakref
from ast import literal_eval
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, session
from flask.globals import request_ctx
from flask.sessions import SessionMixin
from flask.testing import FlaskClient

from sqlite_session import PickleSerializer, current_session

Mutation = Callable[[SessionMixin], None]


def _iadd(s: SessionMixin) -> None:
    s["v"]["list"] += [9]


def _ior(s: SessionMixin) -> None:
    s["v"]["d"] |= {"o": 1}


def _imul(s: SessionMixin) -> None:
    s["v"]["list"] *= 2


def _sort(s: SessionMixin) -> None:
    s["v"]["list"].sort(reverse=True)


CASES: list[tuple[str, Mutation, Any]] = [
    ("append", lambda s: s["v"]["list"].append(4), {"list": [1, 2, 3, 4], "d": {"x": []}}),
    (
        "set nested key",
        lambda s: s["v"]["d"].__setitem__("y", 1),
        {"list": [1, 2, 3], "d": {"x": [], "y": 1}},
    ),
    (
        "setdefault append",
        lambda s: s["v"].setdefault("new", []).append(1),
        {"list": [1, 2, 3], "d": {"x": []}, "new": [1]},
    ),
    ("del nested", lambda s: s["v"]["d"].__delitem__("x"), {"list": [1, 2, 3], "d": {}}),
    ("extend", lambda s: s["v"]["list"].extend([4, 5]), {"list": [1, 2, 3, 4, 5], "d": {"x": []}}),
    ("update", lambda s: s["v"]["d"].update(z=2), {"list": [1, 2, 3], "d": {"x": [], "z": 2}}),
    ("pop list", lambda s: s["v"]["list"].pop(), {"list": [1, 2], "d": {"x": []}}),
    ("pop dict", lambda s: s["v"]["d"].pop("x"), {"list": [1, 2, 3], "d": {}}),
    ("clear", lambda s: s["v"]["list"].clear(), {"list": [], "d": {"x": []}}),
    ("+=", _iadd, {"list": [1, 2, 3, 9], "d": {"x": []}}),
    ("insert", lambda s: s["v"]["list"].insert(0, 0), {"list": [0, 1, 2, 3], "d": {"x": []}}),
    ("sort", _sort, {"list": [3, 2, 1], "d": {"x": []}}),
    ("remove", lambda s: s["v"]["list"].remove(2), {"list": [1, 3], "d": {"x": []}}),
    ("|=", _ior, {"list": [1, 2, 3], "d": {"x": [], "o": 1}}),
    ("*=", _imul, {"list": [1, 2, 3, 1, 2, 3], "d": {"x": []}}),
    ("reverse", lambda s: s["v"]["list"].reverse(), {"list": [3, 2, 1], "d": {"x": []}}),
    (
        "slice assignment",
        lambda s: s["v"]["list"].__setitem__(slice(0, 2), [7]),
        {"list": [7, 3], "d": {"x": []}},
    ),
    ("del index", lambda s: s["v"]["list"].__delitem__(0), {"list": [2, 3], "d": {"x": []}}),
    ("popitem", lambda s: s["v"]["d"].popitem(), {"list": [1, 2, 3], "d": {}}),
    (
        "depth 3",
        lambda s: s["v"]["d"]["x"].append({"deep": [1]}),
        {"list": [1, 2, 3], "d": {"x": [{"deep": [1]}]}},
    ),
    (
        "depth 5",
        lambda s: s["v"]["d"]["x"].append({"a": {"b": [0]}}) or None,
        {"list": [1, 2, 3], "d": {"x": [{"a": {"b": [0]}}]}},
    ),
]


def make_client(app: Flask, mutation: Mutation, initial: Any) -> FlaskClient:
    @app.get("/seed")
    def seed() -> str:
        session["v"] = initial
        session["other"] = "untouched"
        return ""

    @app.get("/mutate")
    def mutate() -> str:
        mutation(session)
        return ""

    @app.get("/read")
    def read() -> str:
        return repr(session["v"])

    client = app.test_client()
    client.get("/seed")
    return client


@pytest.mark.parametrize(("name", "mutation", "expected"), CASES, ids=[c[0] for c in CASES])
def test_in_place_mutation_persists(
    app: Flask, name: str, mutation: Mutation, expected: Any
) -> None:
    client = make_client(app, mutation, {"list": [1, 2, 3], "d": {"x": []}})
    client.get("/mutate")
    assert literal_eval(client.get("/read").text) == (expected)


def test_deeper_mutation_below_a_stored_nested_value(app: Flask) -> None:
    def mutation(s: SessionMixin) -> None:
        s["v"]["a"]["b"]["c"][0]["d"].append(2)

    client = make_client(app, mutation, {"a": {"b": {"c": [{"d": [1]}]}}})
    client.get("/mutate")
    assert literal_eval(client.get("/read").text) == ({"a": {"b": {"c": [{"d": [1, 2]}]}}})


def test_list_inside_a_tuple_is_tracked(app: Flask) -> None:
    client = make_client(app, lambda s: s["v"][1].append("b"), (1, ["a"]))
    client.get("/mutate")
    assert literal_eval(client.get("/read").text) == ((1, ["a", "b"]))


def test_top_level_containers_stay_dicts_and_lists(app: Flask) -> None:
    def check(s: SessionMixin) -> None:
        value = s["v"]
        assert isinstance(value, dict) and isinstance(value["list"], list)
        assert isinstance(value["d"], dict)
        assert value == {"list": [1, 2, 3], "d": {"x": []}}
        assert json.loads(json.dumps(value)) == value

    client = make_client(app, check, {"list": [1, 2, 3], "d": {"x": []}})
    assert client.get("/mutate").status_code == 200


def test_mutating_a_value_after_its_key_was_deleted_does_not_resurrect_it(app: Flask) -> None:
    def mutation(s: SessionMixin) -> None:
        value = s["v"]
        del s["v"]
        value["list"].append("ghost")
        value["list"] += ["ghost"]

    @app.get("/keys")
    def keys() -> str:
        return repr(sorted(session))

    client = make_client(app, mutation, {"list": [1]})
    client.get("/mutate")
    assert client.get("/keys").text == "['other']"


def test_mutating_a_replaced_value_does_not_overwrite_the_replacement(app: Flask) -> None:
    def mutation(s: SessionMixin) -> None:
        old = s["v"]
        s["v"] = {"list": ["new"]}
        old["list"].append("stale")

    client = make_client(app, mutation, {"list": [1]})
    client.get("/mutate")
    assert literal_eval(client.get("/read").text) == ({"list": ["new"]})


def test_a_value_assigned_then_mutated_in_the_same_request_is_saved_whole(app: Flask) -> None:
    def mutation(s: SessionMixin) -> None:
        cart: list[str] = []
        s["v"] = cart
        cart.append("apple")
        s.setdefault("fresh", []).append(1)

    @app.get("/fresh")
    def fresh() -> str:
        return repr(session["fresh"])

    client = make_client(app, mutation, None)
    client.get("/mutate")
    assert literal_eval(client.get("/read").text) == (["apple"])
    assert client.get("/fresh").text == "[1]"


def test_reading_nested_values_without_mutating_writes_nothing(app: Flask) -> None:
    def mutation(s: SessionMixin) -> None:
        assert s["v"]["list"][0] == 1 and "x" in s["v"]["d"]
        assert not s.modified

    client = make_client(app, mutation, {"list": [1], "d": {"x": 1}})
    assert "Set-Cookie" not in client.get("/mutate").headers


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Only reference counting frees objects inside the block."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_session_with_nested_values_is_freed_without_the_collector(
    make_app: Callable[..., Flask], no_gc: None
) -> None:
    app = make_app()
    seen: list[weakref.ref[Any]] = []
    kept: list[Any] = []

    @app.get("/set")
    def set_() -> str:
        session["cart"] = {"items": [1]}
        return "ok"

    @app.get("/append")
    def append() -> str:
        seen.append(weakref.ref(request_ctx.session))
        cart = session["cart"]
        cart["items"].append(2)
        kept.append(cart)
        return "ok"

    client = app.test_client()
    client.get("/set")
    client.get("/append")
    assert seen and seen[0]() is None  # freed as soon as the request ended
    kept[0]["items"].append(3)  # mutating a value that outlived its session is harmless
    assert client.get("/append").status_code == 200
    assert kept[1]["items"] == [1, 2, 2]  # the first append persisted, the late one not


class Counter:
    """A mutable value the session cannot track (stored with the pickle serializer)."""

    def __init__(self) -> None:
        self.hits = 0


def test_mark_changed_saves_an_untracked_value_changed_in_place(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(serializer=PickleSerializer())

    @app.post("/seed")
    def seed() -> str:
        session["c"] = Counter()
        return ""

    @app.post("/hit")
    def hit() -> str:
        session["c"].hits += 1  # in place: invisible to the session...
        if request_ctx.request.args.get("mark"):
            current_session().mark_changed("c")  # ...unless the view says so
        return ""

    @app.get("/hits")
    def hits() -> str:
        return str(session["c"].hits)

    client = app.test_client()
    client.post("/seed")
    client.post("/hit")
    assert client.get("/hits").text == "0"
    client.post("/hit?mark=1")
    assert client.get("/hits").text == "1"
