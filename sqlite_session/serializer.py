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
from typing import Any, Protocol

from flask.json.tag import TaggedJSONSerializer as _FlaskTaggedJSON


class Serializer(Protocol):
    """What the store needs of a serializer: bytes in, value out, and back."""

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``; raise :class:`TypeError` when it cannot be stored."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode what :meth:`dumps` produced."""
        ...


# Values of these exact types carry no tag in Flask's tagged JSON: they are plain JSON,
# and the standard library encodes and decodes them byte for byte the same way. Going
# through Flask's tagger (every tag's check, then the app's JSON provider) costs 6-9 µs
# per value, json.dumps 0.2-2 µs; most session values are such scalars.
_PLAIN_TYPES = (str, int, float, bool, type(None))


class TaggedJSONSerializer:
    """Flask's tagged JSON, the types its cookie session supports (the default)."""

    def __init__(self) -> None:
        self._tagged = _FlaskTaggedJSON()

    def dumps(self, value: Any) -> bytes:
        if type(value) in _PLAIN_TYPES:
            return json.dumps(value).encode("utf-8")
        try:
            return self._tagged.dumps(value).encode("utf-8")
        except ValueError as exc:  # e.g. a circular reference
            raise TypeError(str(exc)) from exc

    def loads(self, data: bytes) -> Any:
        text = data.decode("utf-8")
        if "{" not in text:  # tags are JSON objects: without one there is nothing to undo
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
