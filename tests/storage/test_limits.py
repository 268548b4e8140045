"""Size limits: one value, one session, the number of keys.

Each limit fails with :class:`SessionTooLarge` naming the key that crossed it, leaves
what was stored untouched, and the next request that fits is saved normally.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from core_helpers import session_files
from flask import Flask, jsonify, request, session

from sqlite_session import SessionTooLarge


def limited_app(make_app: Callable[..., Flask], **limits: Any) -> Flask:
    app = make_app(**limits)

    @app.post("/put/<key>/<int:size>")
    def put(key: str, size: int) -> str:
        session[key] = "x" * size
        return "ok"

    @app.post("/many/<int:count>/<int:size>")
    def many(count: int, size: int) -> str:
        for i in range(count):
            session[f"{request.args.get('prefix', 'k')}{i}"] = "x" * size
        return "ok"

    @app.post("/grow/<key>/<int:size>")
    def grow(key: str, size: int) -> str:
        session.setdefault(key, []).append("x" * size)  # a nested change, checked at save
        return "ok"

    @app.get("/sizes")
    def sizes() -> Any:
        return jsonify({key: len(str(value)) for key, value in session.items()})

    return app


def test_value_limit_is_raised_at_the_assignment(make_app: Callable[..., Flask]) -> None:
    app = limited_app(make_app, max_value_bytes=1000)
    client = app.test_client()
    client.post("/put/small/10")
    with pytest.raises(SessionTooLarge, match="'big'") as caught:
        client.post("/put/big/2000")
    assert caught.value.key == "big"
    assert client.get("/sizes").json == {"small": 10}


def test_value_limit_catches_a_nested_value_grown_in_place(
    make_app: Callable[..., Flask],
) -> None:
    app = limited_app(make_app, max_value_bytes=1000)
    client = app.test_client()
    client.post("/grow/cart/400")
    with pytest.raises(SessionTooLarge, match="'cart'") as caught:
        client.post("/grow/cart/800")  # fits alone, not on top of what is there
    assert caught.value.key == "cart"
    assert client.get("/sizes").json == {"cart": len(str(["x" * 400]))}


def test_key_count_limit(make_app: Callable[..., Flask], session_dir: Path) -> None:
    app = limited_app(make_app, max_keys=5)
    client = app.test_client()
    with pytest.raises(SessionTooLarge, match="6 keys") as caught:
        client.post("/many/6/1")  # a new session over the limit: no file at all
    assert caught.value.key.startswith("k")
    assert session_files(session_dir) == []
    client.post("/many/5/1")
    with pytest.raises(SessionTooLarge) as caught:
        client.post("/many/1/1?prefix=extra")
    assert caught.value.key == "extra0"
    assert sorted(client.get("/sizes").json) == [f"k{i}" for i in range(5)]


def test_session_size_limit(make_app: Callable[..., Flask], session_dir: Path) -> None:
    app = limited_app(make_app, max_session_bytes=32 * 1024, max_value_bytes=None)
    client = app.test_client()
    client.post("/put/first/1000")
    with pytest.raises(SessionTooLarge, match="bytes") as caught:
        client.post("/many/40/1000")
    assert caught.value.key.startswith("k")
    assert client.get("/sizes").json == {"first": 1000}
    with pytest.raises(SessionTooLarge):  # one value bigger than the whole session
        client.post("/put/huge/100000")
    client.post("/many/10/1000")  # what fits is still saved
    assert len(client.get("/sizes").json) == 11
    (name,) = session_files(session_dir)
    assert (session_dir / name).stat().st_size <= 32 * 1024
