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


class TaggedJSONSerializer:
    """Flask's tagged JSON, the types its cookie session supports (the default)."""

    def __init__(self) -> None:
        self._tagged = _FlaskTaggedJSON()

    def dumps(self, value: Any) -> bytes:
        try:
            return self._tagged.dumps(value).encode("utf-8")
        except ValueError as exc:  # e.g. a circular reference
            raise TypeError(str(exc)) from exc

    def loads(self, data: bytes) -> Any:
        return self._tagged.loads(data.decode("utf-8"))


class PickleSerializer:
    """Pickle: any picklable value. Opt-in only, see the module docstring."""

    def dumps(self, value: Any) -> bytes:
        try:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError) as exc:
            raise TypeError(str(exc)) from exc

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)  # the user opted in, see the class docstring
