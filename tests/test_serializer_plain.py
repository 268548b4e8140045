"""The default serializer's shortcut for plain scalars is Flask's tagged JSON exactly."""

from __future__ import annotations

import math
from typing import Any

from flask import Flask
from flask.json.tag import TaggedJSONSerializer as FlaskTaggedJSON
from hypothesis import given
from hypothesis import strategies as st

from sqlite_session import TaggedJSONSerializer

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
