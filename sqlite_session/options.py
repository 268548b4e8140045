"""The type and range of every option of :class:`~sqlite_session.SqliteSessionInterface`.

Checked when the interface is built, whether from its constructor or from the
extension's ``SQLITE_SESSION_*`` config, so a bad value fails at start-up with a
:class:`ValueError` naming the option, never at the first request that uses it.
"""

from __future__ import annotations

import logging
import math
import resource
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, NamedTuple

from .store import PAGE_SIZE

log = logging.getLogger("sqlite_session")

# A session file is never smaller than 4 pages (see the store's file format).
MIN_SESSION_BYTES = 4 * PAGE_SIZE


class Rule(NamedTuple):
    """What an option accepts: a predicate and its wording for the error message."""

    accepts: Callable[[Any], bool]
    wanted: str


def _is_number(value: Any) -> bool:
    """An int or float that is finite; a bool is not a number here (True is not 1 s)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_serializer(value: Any) -> bool:
    """Callable ``dumps`` and ``loads``, ``dumps`` returning ``bytes``.

    ``dumps`` is probed once: a serializer that returns ``str`` (Flask's own tagged-JSON
    class, the ``json`` module) would otherwise store values the store cannot read back.
    """
    if not (callable(getattr(value, "dumps", None)) and callable(getattr(value, "loads", None))):
        return False
    try:
        return type(value.dumps("probe")) is bytes
    except Exception:  # whatever a foreign serializer raises: it is not usable
        return False


def _or_none(rule: Rule) -> Rule:
    return Rule(lambda v: v is None or rule.accepts(v), f"{rule.wanted}, or None")


_FLAG = Rule(lambda v: isinstance(v, bool), "True or False")
_SECONDS = Rule(lambda v: _is_number(v) and v > 0, "a finite number of seconds > 0")
# SQLite takes its busy timeout as a C int of milliseconds.
_LOCK_SECONDS = Rule(
    lambda v: _is_number(v) and 0.001 <= v <= (2**31 - 1) / 1000,
    "a number of seconds from 0.001 to 2147483.647",
)
_POSITIVE_INT = Rule(lambda v: _is_int(v) and v >= 1, "an int >= 1")
_LIFETIME = Rule(
    lambda v: (_is_number(v) and v > 0) or (isinstance(v, timedelta) and v > timedelta()),
    "a finite number of seconds > 0 or a positive timedelta",
)

RULES: dict[str, Rule] = {
    "serializer": _or_none(
        Rule(_is_serializer, "an object with loads() and a dumps() that returns bytes")
    ),
    "save_on_error": _FLAG,
    "lock_timeout": _LOCK_SECONDS,
    "strict": _FLAG,
    "max_value_bytes": _or_none(_POSITIVE_INT),
    "max_session_bytes": _or_none(
        Rule(lambda v: _is_int(v) and v >= MIN_SESSION_BYTES, f"an int >= {MIN_SESSION_BYTES}")
    ),
    "max_keys": _or_none(_POSITIVE_INT),
    "node": _or_none(Rule(lambda v: isinstance(v, str), "a str")),
    "regenerate_grace": Rule(lambda v: _is_number(v) and v >= 0, "a finite number of seconds >= 0"),
    # 1 would let no request move an expiry before it passed: no session would outlive
    # its first lifetime, however active.
    "refresh_fraction": Rule(
        lambda v: _is_number(v) and 0 <= v < 1, "a number from 0 up to (not including) 1"
    ),
    "connection_cache_size": Rule(lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    "allow_unsafe_directory": _FLAG,
    # 0 used to start no sweeper without a word: None is the one way to turn it off.
    "sweep_every": _or_none(_SECONDS),
    "flask_login": _FLAG,
    "user_key": Rule(lambda v: isinstance(v, str) and v != "", "a non-empty str"),
    "record_client": _FLAG,
    "absolute_lifetime": _or_none(_LIFETIME),
    "anonymous_lifetime": _or_none(_LIFETIME),
    # Below 1: a reserve of the whole filesystem would refuse every anonymous session.
    "reserve_fraction": Rule(lambda v: _is_number(v) and 0 <= v < 1, "a number from 0 to < 1"),
}


def check_option(name: str, value: Any, label: str | None = None) -> None:
    """Raise :class:`ValueError` naming ``label`` (default ``name``) if ``value`` is refused."""
    rule = RULES[name]
    if not rule.accepts(value):
        raise ValueError(
            f"{label or name} must be {rule.wanted}, not {type(value).__name__} {value!r}"
        )


def check_options(options: Mapping[str, Any]) -> None:
    """Check every entry of ``options`` that names an option; other entries are ignored."""
    for name in RULES:
        if name in options:
            check_option(name, options[name])


def seconds(duration: float | timedelta | None) -> float | None:
    """A duration option as seconds (a ``timedelta`` converted)."""
    return duration.total_seconds() if isinstance(duration, timedelta) else duration


def warn_if_too_many_files(connection_cache_size: int) -> None:
    """Warn when the pooled connections could use up the process's file descriptors.

    A WAL connection keeps three files open; a worker that runs out of descriptors
    cannot open session files, and its users would get fresh sessions.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 3 * connection_cache_size
    if soft != resource.RLIM_INFINITY and needed > soft // 2:
        log.warning(
            "connection_cache_size=%d keeps up to %d files open per process, more than "
            "half of its limit (ulimit -n %d): lower it or raise the limit",
            connection_cache_size,
            needed,
            soft,
        )
