"""The default serializer's shortcut for plain scalars is Flask's tagged JSON exactly."""

from __future__ import annotations

import json
import math
from typing import Any

from flask import Flask
from flask.json.tag import TaggedJSONSerializer as FlaskTaggedJSON
from hypothesis import example, given
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
