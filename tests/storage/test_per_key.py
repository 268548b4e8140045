"""One row per key; a request reads only the rows it touches.

Bytes read are counted by the spy VFS, which sits under SQLite itself, so this measures
what the store really reads from the file rather than trusting its queries.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from core_helpers import cookie_value, session_path, sid_of, spy_io, stored_rows
from flask import Flask, request, session
from flask.testing import FlaskClient

from sqlite_session import TaggedJSONSerializer

KEYS = 1000
VALUE = "v" * 1000


class CountingSerializer(TaggedJSONSerializer):
    """The default serializer, counting decodes: a serializer is a public option."""

    def __init__(self) -> None:
        super().__init__()
        self.loads_count = 0

    def loads(self, data: bytes) -> Any:
        self.loads_count += 1
        return super().loads(data)


def routes(app: Flask) -> Flask:
    @app.get("/fill")
    def fill() -> str:
        for i in range(KEYS):
            session[f"k{i}"] = VALUE
        return "ok"

    @app.get("/one")
    def one() -> str:
        return str(len(session["k500"]))

    @app.get("/keys")
    def keys() -> str:
        return str(len(list(session.keys())))

    @app.get("/len")
    def length() -> str:
        return str(len(session))

    @app.get("/iter")
    def iterate() -> str:
        return str(sum(1 for _ in session))

    @app.get("/contains")
    def contains() -> str:
        return str("k999" in session)

    return app


@pytest.fixture
def big_session(make_app: Callable[..., Flask], session_dir: Path) -> str:
    """The cookie of a stored session of 1000 keys x 1 KB."""
    client = routes(make_app()).test_client()
    client.get("/fill")
    assert len(stored_rows(session_dir, sid_of(client))) == KEYS
    cookie = cookie_value(client)
    assert cookie
    return cookie


def fresh_client(make_app: Callable[..., Flask], cookie: str, **options: Any) -> FlaskClient:
    client = routes(make_app(**options)).test_client()
    client.set_cookie("session", cookie)
    return client


def test_reading_one_key_reads_that_row_only(
    make_app: Callable[..., Flask], session_dir: Path, big_session: str
) -> None:
    file_size = session_path(session_dir, big_session.rpartition(".")[0]).stat().st_size
    serializer = CountingSerializer()
    client = fresh_client(make_app, big_session, serializer=serializer)
    with spy_io(session_dir) as log:
        assert client.get("/one").text == "1000"
    assert serializer.loads_count == 1
    # The file is over 1 MB; one key is its header, the B-tree path and one value.
    assert file_size > KEYS * len(VALUE)
    assert log.bytes_read < file_size / 20, (log.bytes_read, file_size)


BIG = "x" * 20_000


def big_value_routes(app: Flask) -> Flask:
    @app.get("/fill")
    def fill() -> str:
        for i in range(200):
            session[f"k{i}"] = BIG
        session["small"] = 1
        return ""

    @app.get("/one")
    def one() -> str:
        return str(len(session["k100"]))

    @app.get("/has")
    def has() -> str:
        return str("k100" in session and "small" in session)

    @app.get("/small")
    def small() -> str:
        return str(session["small"])

    return app


@pytest.mark.parametrize(
    ("path", "expected", "limit"),
    [
        ("/one", "20000", 2 * len(BIG)),  # that value once, plus a few pages
        ("/has", "True", len(BIG)),  # less than any one of the big values
        ("/small", "1", len(BIG)),
    ],
)
def test_cost_of_one_key_does_not_grow_with_the_size_of_the_other_values(
    make_app: Callable[..., Flask], session_dir: Path, path: str, expected: str, limit: int
) -> None:
    """Large values: looking a key up must not walk other keys' values on its way."""
    writer = big_value_routes(make_app()).test_client()
    writer.get("/fill")
    cookie = cookie_value(writer)
    assert cookie
    reader = big_value_routes(make_app()).test_client()
    reader.set_cookie("session", cookie)
    with spy_io(session_dir) as log:
        assert reader.get(path).text == expected
    assert log.bytes_read < limit, (path, log.bytes_read)


@pytest.mark.parametrize("path", ["/keys", "/len", "/iter", "/contains"])
def test_key_list_reads_no_values(
    make_app: Callable[..., Flask], session_dir: Path, big_session: str, path: str
) -> None:
    file_size = session_path(session_dir, big_session.rpartition(".")[0]).stat().st_size
    serializer = CountingSerializer()
    client = fresh_client(make_app, big_session, serializer=serializer)
    with spy_io(session_dir) as log:
        response = client.get(path)
    assert response.text == ("True" if path == "/contains" else str(KEYS))
    assert serializer.loads_count == 0  # no value was decoded
    # Listing keys walks the leaf pages, never the values' overflow pages.
    assert log.bytes_read < file_size / 20, (log.bytes_read, file_size)


@pytest.mark.parametrize(
    "expression",
    [
        "'a' in s",
        "len(s)",
        "list(s)",
        "s.get('a')",
        "s.keys()",
        "list(s.items())",
        "s['a'] if 'a' in s else None",
        "s.permanent",
    ],
)
@pytest.mark.parametrize("stored", [False, True], ids=["new", "stored"])
def test_every_read_path_marks_the_session_accessed(
    app: Flask, expression: str, stored: bool
) -> None:
    """The mapping itself marks access (Flask >= 3.1 also marks it on every proxy access;
    Flask 3.0 relies on the session object alone), and the response varies on Cookie."""

    @app.get("/seed")
    def seed() -> str:
        session["a"] = 1
        return ""

    @app.get("/read")
    def read() -> str:
        eval(expression, {"s": session})
        return ""

    client = app.test_client()
    if stored:
        client.get("/seed")
    headers = {"Cookie": f"session={cookie_value(client)}"} if stored else {}
    with app.test_request_context(headers=headers):
        s = app.session_interface.open_session(app, request)
        assert s is not None and not s.accessed
        eval(expression, {"s": s})
        assert s.accessed
    response = client.get("/read")
    assert "cookie" in response.vary.as_set()
