"""The session cookie is read from the Cookie header exactly as Werkzeug reads it.

``cookie_value`` picks our cookie out of the header without parsing every cookie; on any
header at all it must return what ``request.cookies.get(name)`` returns.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st
from werkzeug.test import create_environ
from werkzeug.wrappers import Request

from sqlite_session.interface import cookie_value

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
