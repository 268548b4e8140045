"""The one-line setup works end to end: set, read, nested change, clear."""

from __future__ import annotations

from pathlib import Path

from core_helpers import session_files
from flask import Flask, session


def test_round_trip(app: Flask, session_dir: Path) -> None:
    @app.get("/set")
    def set_() -> str:
        session["cart"] = ["apple"]
        return "ok"

    @app.get("/append")
    def append() -> str:
        session["cart"].append("pear")
        return "ok"

    @app.get("/show")
    def show() -> str:
        return ",".join(session.get("cart", []))

    @app.get("/clear")
    def clear() -> str:
        session.clear()
        return "ok"

    client = app.test_client()
    client.get("/set")
    assert len(session_files(session_dir)) == 1
    client.get("/append")
    assert client.get("/show").text == "apple,pear"
    response = client.get("/clear")
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert session_files(session_dir) == []
