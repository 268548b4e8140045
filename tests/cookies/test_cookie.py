"""The session cookie: Flask's config sets it, the deleted one matches the set one, and
it is read from the Cookie header exactly as Werkzeug reads it.

``cookie_value`` picks our cookie out of the header without parsing every cookie; on any
header at all it must return what ``request.cookies.get(name)`` returns.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from core_helpers import session_files, sid_of, stored_meta, stored_rows
from flask import Flask, session
from flask.testing import FlaskClient
from hypothesis import example, given, settings
from hypothesis import strategies as st
from werkzeug.http import parse_date
from werkzeug.test import TestResponse, create_environ
from werkzeug.wrappers import Request

from sqlite_session.cookie_header import cookie_value

SETTINGS = dict(
    SESSION_COOKIE_NAME="sid",
    SESSION_COOKIE_DOMAIN="example.com",
    SESSION_COOKIE_PATH="/app",
    SESSION_COOKIE_HTTPONLY=False,
    SESSION_COOKIE_SECURE=True,
    SESSION_COOKIE_SAMESITE="Strict",
    SESSION_COOKIE_PARTITIONED=True,
)


def cookie_attributes(response: TestResponse) -> dict[str, str]:
    """The attributes of the one Set-Cookie header, lower-cased names ("" for flags)."""
    headers = response.headers.getlist("Set-Cookie")
    assert len(headers) == 1, headers
    first, *rest = (part.strip() for part in headers[0].split(";"))
    name, _, value = first.partition("=")
    attributes = {"name": name, "value": value}
    for part in rest:
        key, _, val = part.partition("=")
        attributes[key.lower()] = val
    return attributes


def routes(app: Flask) -> FlaskClient:
    @app.get("/app/set")
    def set_() -> str:
        session["k"] = "v"
        session.permanent = app.config.get("TEST_PERMANENT", False)
        return ""

    @app.get("/app/read")
    def read() -> str:
        return str(session.get("k"))

    @app.get("/app/nothing")
    def nothing() -> str:
        return ""

    @app.get("/app/clear")
    def clear() -> str:
        session.clear()
        return ""

    return app.test_client()


def test_name_and_attributes_come_from_flask_config(app: Flask) -> None:
    app.config.update(SETTINGS)
    client = routes(app)
    attrs = cookie_attributes(client.get("/app/set", "https://www.example.com/"))
    assert attrs["name"] == "sid"
    assert attrs["domain"] == "example.com"
    assert attrs["path"] == "/app"
    assert "httponly" not in attrs
    assert "secure" in attrs
    assert attrs["samesite"] == "Strict"
    assert "partitioned" in attrs
    assert "expires" not in attrs  # not permanent: a browser-session cookie


def test_defaults_are_flasks(app: Flask) -> None:
    attrs = cookie_attributes(routes(app).get("/app/set"))
    assert attrs["name"] == "session"
    assert attrs["path"] == "/"
    assert "httponly" in attrs
    assert "secure" not in attrs and "domain" not in attrs and "samesite" not in attrs


def test_deleted_cookie_carries_the_same_attributes(app: Flask) -> None:
    app.config.update(SETTINGS)
    client = routes(app)
    base = "https://www.example.com/"
    set_attrs = cookie_attributes(client.get("/app/set", base))
    deleted = cookie_attributes(client.get("/app/clear", base))
    assert deleted["value"] == ""
    assert deleted["max-age"] == "0"
    for attribute in ("name", "domain", "path", "secure", "samesite", "partitioned"):
        assert deleted.get(attribute) == set_attrs.get(attribute), attribute


def test_permanent_session_gets_expires_from_the_lifetime(
    make_app: Callable[..., Flask], session_dir: Path
) -> None:
    app = make_app(anonymous_lifetime=None)  # the app's lifetime, not the anonymous one
    app.config.update(TEST_PERMANENT=True, PERMANENT_SESSION_LIFETIME=timedelta(hours=3))
    client = routes(app)
    attrs = cookie_attributes(client.get("/app/set"))
    expires = parse_date(attrs["expires"])
    assert expires is not None
    assert abs(expires.timestamp() - (time.time() + 3 * 3600)) < 5
    # the cookie and the stored expiry agree
    assert abs(stored_meta(session_dir, sid_of(client))["expires_at"] - expires.timestamp()) < 2


@pytest.mark.parametrize(("permanent", "refresh"), list(itertools.product([True, False], repeat=2)))
def test_a_read_before_the_refresh_is_due_sends_no_cookie(
    app: Flask, session_dir: Path, permanent: bool, refresh: bool
) -> None:
    """The cookie is re-sent only when its Expires moves (see test_expiry for a due one):
    re-sending the Expires the client already holds would tell it nothing."""
    app.config.update(TEST_PERMANENT=permanent, SESSION_REFRESH_EACH_REQUEST=refresh)
    client = routes(app)
    client.get("/app/set")
    rows = stored_rows(session_dir, sid_of(client))
    meta = stored_meta(session_dir, sid_of(client))
    response = client.get("/app/read")
    assert response.text == "v"
    assert "Set-Cookie" not in response.headers
    assert response.headers["Vary"] == "Cookie"
    # nothing stored is rewritten either (the expiry is not yet due)
    assert stored_rows(session_dir, sid_of(client)) == rows
    assert stored_meta(session_dir, sid_of(client)) == meta
    # an untouched request never refreshes anything
    untouched = client.get("/app/nothing")
    assert "Set-Cookie" not in untouched.headers and "Vary" not in untouched.headers


@pytest.mark.parametrize("path", ["/app/set", "/app/read", "/app/clear"])
def test_vary_cookie_whenever_the_session_was_accessed(app: Flask, path: str) -> None:
    client = routes(app)
    client.get("/app/set")
    response = client.get(path)
    assert response.headers.getlist("Vary") == ["Cookie"]


def test_invalid_samesite_is_refused_before_anything_is_stored(
    app: Flask, session_dir: Path
) -> None:
    app.config["SESSION_COOKIE_SAMESITE"] = "invalid"
    with pytest.raises(ValueError, match=r"(?i)samesite"):
        routes(app).get("/app/set")
    assert session_files(session_dir) == []  # no file whose id no client will ever hold


def test_cookie_for_a_secret_key_app_only(make_app: Callable[..., Flask]) -> None:
    """Without SECRET_KEY Flask's null session explains the missing key, as usual."""
    app = make_app()
    app.config["SECRET_KEY"] = None

    @app.get("/write")
    def write() -> str:
        session["x"] = 1
        return ""

    with pytest.raises(RuntimeError, match="secret key"):
        app.test_client().get("/write")


NAMES = st.sampled_from(["session", "Session", "xsession", "sessionx", "a", "", " session"])
VALUES = st.text(alphabet=st.sampled_from([*'ab.-_=; "\\\t,%', "é"]), max_size=12)
SEPARATORS = st.sampled_from([";", "; ", " ;", ";;", ";\t", "=;"])


def headers() -> st.SearchStrategy[str]:
    pair = st.tuples(NAMES, st.sampled_from(["=", " = ", "= ", "=="]), VALUES)
    return st.lists(st.tuples(pair, SEPARATORS), max_size=5).map(
        lambda items: "".join(f"{n}{eq}{v}{sep}" for (n, eq, v), sep in items)
    )


def werkzeug_reads(header: str) -> str | None:
    environ = create_environ()
    environ["HTTP_COOKIE"] = header
    return Request(environ).cookies.get("session")


def ours(header: str) -> str | None:
    environ = create_environ()
    environ["HTTP_COOKIE"] = header
    return cookie_value(Request(environ), "session")


@settings(max_examples=3000, deadline=None)
@given(headers())
@example('a="x; session=evil"; session=good')
@example("session=first; session=second")
@example("session = spaced")
@example("session=")
@example("")
def test_reads_what_werkzeug_reads(header: str) -> None:
    assert ours(header) == werkzeug_reads(header)


def test_a_plain_session_cookie_is_found_without_parsing_the_others() -> None:
    environ = create_environ()
    environ["HTTP_COOKIE"] = "theme=dark; session=abc.DEF-_1; lang=en"
    request = Request(environ)
    assert cookie_value(request, "session") == "abc.DEF-_1"
    assert "cookies" not in request.__dict__  # Werkzeug's cached parse was never made
