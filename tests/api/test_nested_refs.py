"""Tracked values do not keep their session alive: no reference cycle per request."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, session


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
        seen.append(weakref.ref(session._get_current_object()))  # type: ignore[attr-defined]
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
