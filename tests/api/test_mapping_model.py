"""The session behaves like a plain dict across requests (a model-based check).

Hypothesis draws sequences of requests, each a list of mapping operations (set, delete,
pop, clear, nested append, nested set). Every request applies them to ``flask.session``
and to a plain dict model; at the start of each request the session must equal the
model, whatever mix of cached, stored, dirty and deleted keys led there.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from flask import Flask, session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlite_session import SqliteSessionInterface

KEYS = st.sampled_from(["a", "b", "c", "ü", ""])
VALUES = st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3))
OPS = st.one_of(
    st.tuples(st.just("set"), KEYS, VALUES),
    st.tuples(st.just("del"), KEYS, st.none()),
    st.tuples(st.just("pop"), KEYS, st.none()),
    st.tuples(st.just("clear"), st.none(), st.none()),
    st.tuples(st.just("append"), KEYS, st.integers()),
    st.tuples(st.just("nest"), KEYS, st.integers()),
    st.tuples(st.just("read"), KEYS, st.none()),
)


def apply(target: Any, op: tuple[str, Any, Any]) -> None:
    """One operation on a dict-like ``target``, the same code for session and model."""
    name, key, value = op
    if name == "set":
        target[key] = copy.deepcopy(value)
    elif name == "del":
        if key in target:
            del target[key]
    elif name == "pop":
        target.pop(key, None)
    elif name == "clear":
        target.clear()
    elif name == "append":
        if isinstance(target.get(key), list):
            target[key].append(value)
    elif name == "nest":
        target.setdefault("n", {}).setdefault(key, []).append(value)
    else:
        target.get(key)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.lists(OPS, max_size=6), min_size=1, max_size=5))
def test_session_matches_a_dict_model(requests: list[list[tuple[str, Any, Any]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = Flask(__name__)
        app.config.update(SECRET_KEY="model", TESTING=True)
        app.session_interface = SqliteSessionInterface(Path(tmp) / "s")
        model: dict[str, Any] = {}
        batch: list[list[tuple[str, Any, Any]]] = [[]]
        snapshot: list[dict[str, Any]] = []

        @app.get("/")
        def step() -> str:
            snapshot.append({k: copy.deepcopy(v) for k, v in session.items()})
            for op in batch[0]:
                apply(session, op)
            return ""

        client = app.test_client()
        for ops in [*requests, []]:
            batch[0] = ops
            client.get("/")
            assert snapshot[-1] == model
            assert len(snapshot[-1]) == len(model)
            for op in ops:
                apply(model, op)
