"""Values the encoder cannot write raise TypeError naming the key, as the README says.

A huge int (more digits than Python turns into text) raised ValueError and a deeply
nested list RecursionError, from inside the encoder, with no key named.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, session

from sqlite_session import PickleSerializer, TaggedJSONSerializer


def deeply_nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


CASES = {
    "huge int": (TaggedJSONSerializer, lambda: 10**5000),
    "huge int in a dict": (TaggedJSONSerializer, lambda: {"n": 10**5000}),
    "deeply nested list": (TaggedJSONSerializer, lambda: deeply_nested(100_000)),
    "deeply nested list, pickle": (PickleSerializer, lambda: deeply_nested(100_000)),
}


@pytest.mark.parametrize(("serializer", "make"), list(CASES.values()), ids=list(CASES))
def test_unstorable_value_raises_type_error_naming_the_key_at_assignment(
    make_app: Callable[..., Flask], serializer: type, make: Callable[[], Any]
) -> None:
    app = make_app(serializer=serializer())

    @app.post("/assign")
    def assign() -> str:
        with pytest.raises(TypeError, match=r"session\['value'\]: cannot store"):
            session["value"] = make()
        session["fine"] = 1
        return ""

    @app.get("/read")
    def read() -> dict[str, Any]:
        return dict(session)

    client = app.test_client()
    assert client.post("/assign").status_code == 200
    assert client.get("/read").json == {"fine": 1}


def test_a_nested_value_that_becomes_unstorable_fails_at_save_naming_the_key(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()

    @app.post("/start")
    def start() -> str:
        session["numbers"] = [1]
        return ""

    @app.post("/grow")
    def grow() -> str:
        session["numbers"].append(deeply_nested(100_000))
        return ""

    client = app.test_client()
    client.post("/start")
    with pytest.raises(TypeError, match=r"session\['numbers'\]: cannot store"):
        client.post("/grow")


class TextOnSomeValues:
    """A serializer that passes the start-up probe but returns text for a list."""

    def dumps(self, value: Any) -> bytes:
        text = json.dumps(value)
        return text if isinstance(value, list) else text.encode()  # type: ignore[return-value]

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


def test_a_serializer_returning_text_is_a_type_error_at_the_assignment(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(serializer=TextOnSomeValues())

    @app.post("/set")
    def set_value() -> str:
        with pytest.raises(TypeError, match=r"session\['cart'\]: the serializer returned str"):
            session["cart"] = [1, 2]
        session["user"] = "ann"
        return "ok"

    @app.get("/get")
    def get_value() -> dict[str, Any]:
        return dict(session)

    client = app.test_client()
    assert client.post("/set").status_code == 200
    assert client.get("/get").json == {"user": "ann"}
