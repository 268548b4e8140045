"""The ``__Host-`` and ``__Secure-`` cookie name prefixes (RFC 6265bis, OWASP ASVS 3.4.4).

A browser silently drops a cookie whose name carries one of these prefixes without the
attributes the prefix promises: the user would simply never stay logged in. So the
configuration is checked when the app starts (:meth:`SqliteSession.init_app`) or, for
an interface set by hand, at its first request, and a mismatch raises
:class:`~sqlite_session.SessionConfigError` naming what to change.
"""

from __future__ import annotations

from .errors import SessionConfigError

HOST_PREFIX = "__Host-"
SECURE_PREFIX = "__Secure-"


def check_cookie_prefix(name: str, *, secure: bool, path: str, domain: str | None) -> None:
    """Raise :class:`SessionConfigError` if the cookie ``name``'s prefix cannot be honoured.

    ``__Host-`` needs ``Secure``, ``Path=/`` and no ``Domain``; ``__Secure-`` needs
    ``Secure``. Browsers compare the prefix case-sensitively, and so does this check.
    """
    problems = []
    if name.startswith((HOST_PREFIX, SECURE_PREFIX)) and not secure:
        problems.append("SESSION_COOKIE_SECURE = True")
    if name.startswith(HOST_PREFIX):
        if path != "/":
            problems.append(f'SESSION_COOKIE_PATH = "/" (it is {path!r})')
        if domain:
            problems.append(f"no SESSION_COOKIE_DOMAIN (it is {domain!r})")
    if problems:
        prefix = HOST_PREFIX if name.startswith(HOST_PREFIX) else SECURE_PREFIX
        raise SessionConfigError(
            f"SESSION_COOKIE_NAME {name!r} starts with {prefix!r}, which browsers honour "
            f"only with {', '.join(problems)}; without it they drop the session cookie "
            "and nobody stays logged in"
        )
