"""The session cookie in the request's ``Cookie`` header and the response's headers."""

from __future__ import annotations

from flask import Request, Response


def cookie_value(request: Request, name: str) -> str | None:
    """The request's cookie ``name``: what ``request.cookies.get(name)`` returns, cheaper.

    ``request.cookies`` parses every cookie of the header into a MultiDict on every
    request; this picks one cookie out of the header directly, following Werkzeug's
    grammar: ``;``-separated
    ``key=value`` pairs, spaces and tabs around them ignored, the first pair of a name
    wins. Anything else is left to ``request.cookies``: a quoted value (it may hide a
    ``;``), or a value with a space or tab inside (Werkzeug skips such a pair). A
    property test checks that the two agree on arbitrary headers.
    """
    header: str | None = request.environ.get("HTTP_COOKIE")
    if not header:
        return None
    if '"' not in header:
        for part in header.split(";"):
            key, _, value = part.partition("=")
            if key.strip(" \t") == name:
                value = value.strip(" \t")
                if " " in value or "\t" in value:
                    break
                return value
        else:
            return None
    return request.cookies.get(name)


def vary_on_cookie(response: Response) -> None:
    """Add ``Vary: Cookie``: cheaply when the response has no Vary header yet (the usual case).

    ``response.vary.add`` re-parses the header, and ``"Vary" in response.headers`` raises
    and catches a KeyError when it is absent; a scan of the few headers plus an append is
    cheaper than either.
    """
    headers = response.headers
    for name, _ in headers:
        if name.lower() == "vary":
            response.vary.add("Cookie")
            return
    headers.add("Vary", "Cookie")


def checked_samesite(value: str | None) -> str | None:
    """``SESSION_COOKIE_SAMESITE`` as Werkzeug will accept it, or ValueError now."""
    if value is not None and value.title() not in ("Strict", "Lax", "None"):
        raise ValueError(
            f"SESSION_COOKIE_SAMESITE must be 'Strict', 'Lax' or 'None', not {value!r}"
        )
    return value
