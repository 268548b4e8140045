"""Value encoding for one session key.

The default, :class:`TaggedJSONSerializer`, is the encoding Flask's own cookie session
uses (``flask.json.tag``): it round-trips str, int, float, bool, None, list, dict, tuple,
bytes, ``markupsafe.Markup``, ``uuid.UUID`` and aware ``datetime``, so an app that moves
off cookie sessions loses nothing. It never executes stored data.

:class:`PickleSerializer` stores any picklable object but unpickling runs code: anyone
who can write to the session directory can then run code in the app. It is used only
when passed explicitly.
"""

from __future__ import annotations

import json
import pickle
import re
from itertools import chain, compress
from typing import Any, Protocol

from flask.json.tag import TaggedJSONSerializer as _FlaskTaggedJSON

from .tracking import TrackedDict, TrackedList


class Serializer(Protocol):
    """What the store needs of a serializer: bytes in, value out, and back."""

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``; raise :class:`TypeError` when it cannot be stored."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode what :meth:`dumps` produced."""
        ...


# Values of exactly str, int, float, bool or None carry no tag in Flask's tagged JSON:
# they are plain JSON, encoded and decoded here byte for byte as Flask does (tested).
# Most session values are such scalars, and Flask's tagger (every tag's check, then the
# app's JSON provider) is by far the costliest way to encode them.
_JSON_WORDS: dict[str, Any] = {"true": True, "false": False, "null": None}


def _plain_json_loads(text: str) -> Any:
    """``json.loads(text)``, with its commonest cases done directly, faster than json.

    Decoded directly: a string without escapes or control characters (what json.dumps
    writes for most text), ``true``, ``false``, ``null``, and a decimal integer in JSON's
    own form (no sign, no leading zero). Anything else, valid or not, is left to
    :func:`json.loads`. A property test checks that both always agree.
    """
    first = text[:1]
    if first == '"':
        inner = text[1:-1]
        if (
            len(text) > 1
            and text[-1] == '"'
            and '"' not in inner
            and "\\" not in inner
            and inner.isprintable()  # (JSON forbids raw control characters)
        ):
            return inner
    elif first.isdigit() and text.isascii() and text.isdigit():
        if first != "0" or len(text) == 1:
            return int(text)
    elif text in _JSON_WORDS:
        return _JSON_WORDS[text]
    return json.loads(text)


_TAG_KEYS = frozenset(_FlaskTaggedJSON().tags)  # " t", " b", " di", ...
_SCALARS = frozenset({str, int, float, bool, type(None)})
# Exactly these: a subclass may be encoded otherwise by the tagger (a str subclass may be
# Markup, a list subclass may iterate differently); it goes through the tagger.
_DICTS = frozenset({dict, TrackedDict})
_LISTS = frozenset({list, TrackedList})
_PLAIN = _SCALARS | _DICTS | _LISTS
# The tagger's separators with the defaults of Flask's JSON provider (sort_keys,
# ensure_ascii), through which it writes: the same bytes.
_PLAIN_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
# A tagged value is a one-key JSON object whose key is a tag (Flask's tagger writes no
# other object of that shape): text without this pattern decodes as plain JSON.
_TAG_OBJECT = re.compile(
    r'\{[ \t\n\r]*"(?:' + "|".join(re.escape(key) for key in sorted(_TAG_KEYS)) + r')"'
)


def _needs_no_tag(value: Any) -> bool:
    """Whether Flask's tagger would leave every part of ``value``, a container, as it is.

    True when it is a dict or list holding only str, int, float, bool and None, in dicts
    and lists (all of exactly those types), and no one-key dict whose key is a tag.
    Checked a level of nesting at a time with C-level iteration (``map``, ``compress``):
    a Python loop per element cost several times the encoding itself. ``value`` must be
    acyclic (json.dumps has accepted it).
    """
    kind = type(value)
    if kind in _LISTS and set(map(type, value)) <= _SCALARS:
        return True  # a list of scalars, the commonest container value: one scan
    if kind not in _DICTS and kind not in _LISTS:
        return False
    dicts, lists = ([value], []) if kind in _DICTS else ([], [value])
    while dicts or lists:
        if 1 in map(len, dicts) and any(len(d) == 1 and next(iter(d)) in _TAG_KEYS for d in dicts):
            return False  # a dict the tagger wraps in " di"
        items = list(chain(chain.from_iterable(map(dict.values, dicts)), *lists))
        kinds = set(map(type, items))
        if kinds <= _SCALARS:
            return True
        if not kinds <= _PLAIN:
            return False
        dicts, lists = _of_kinds(items, kinds, _DICTS), _of_kinds(items, kinds, _LISTS)
    return True


def _of_kinds(items: list[Any], kinds: set[type], wanted: frozenset[type]) -> list[Any]:
    """The items whose type is in ``wanted`` (``kinds``: the types of all of them)."""
    if kinds <= wanted:
        return items
    if kinds.isdisjoint(wanted):
        return []
    return list(compress(items, map(wanted.__contains__, map(type, items))))


class TaggedJSONSerializer:
    """Flask's tagged JSON, the types its cookie session supports (the default).

    Values that need no tag (only JSON's own types, the common case) are encoded and
    decoded by :mod:`json` directly, to the same bytes and values as Flask's tagger,
    which walks every element in Python; anything else goes through the tagger.
    """

    def __init__(self) -> None:
        self._tagged = _FlaskTaggedJSON()

    def dumps(self, value: Any) -> bytes:
        kind = type(value)
        if kind is str or kind is float:  # (float: json.dumps spells NaN and infinities)
            return json.dumps(value).encode("utf-8")
        if kind is int:
            # int.__repr__ is json.dumps's spelling, without its overhead.
            return int.__repr__(value).encode("ascii")
        if kind is bool:
            return b"true" if value else b"false"
        if value is None:
            return b"null"
        try:
            text = _PLAIN_ENCODER.encode(value)
        except (TypeError, ValueError, RecursionError):
            pass  # not plain JSON (or not storable): the tagger decides, as it always did
        else:
            if _needs_no_tag(value):
                return text.encode("utf-8")
        try:
            return self._tagged.dumps(value).encode("utf-8")
        except ValueError as exc:  # e.g. a circular reference
            raise TypeError(str(exc)) from exc

    def loads(self, data: bytes) -> Any:
        text = data.decode("utf-8")
        if "{" not in text:  # tags are JSON objects: without one there is nothing to undo
            return _plain_json_loads(text)
        if '" ' not in text or _TAG_OBJECT.search(text) is None:  # (every tag starts '" ')
            return json.loads(text)
        return self._tagged.loads(text)


class PickleSerializer:
    """Pickle: any picklable value. Opt-in only, see the module docstring."""

    def dumps(self, value: Any) -> bytes:
        try:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError) as exc:
            raise TypeError(str(exc)) from exc

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)  # the user opted in: see the class docstring
