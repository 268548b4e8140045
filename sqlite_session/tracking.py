"""Containers that report nested mutations to their session.

A value read from the store is wrapped with :func:`track`: every dict and list inside
it (at any depth, including inside tuples) becomes a :class:`TrackedDict` or
:class:`TrackedList` that calls ``on_change`` when it is mutated. The session marks the
top-level key dirty, so ``session["cart"].append(x)`` persists without
``session.modified = True``.

They are real ``dict`` and ``list`` subclasses, so ``isinstance`` checks, JSON encoding
and equality behave as for plain values; copying or pickling one yields plain values.
Values assigned in the current request need no tracking: the assignment already marks
the key dirty and the value is encoded from the live object at save time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, SupportsIndex

OnChange = Callable[[], None]


def track(value: Any, on_change: OnChange) -> Any:
    """Return ``value`` with every nested dict and list replaced by a tracked twin."""
    if isinstance(value, dict):
        return TrackedDict({k: track(v, on_change) for k, v in value.items()}, on_change)
    if isinstance(value, list):
        return TrackedList([track(v, on_change) for v in value], on_change)
    if type(value) is tuple:
        return tuple(track(v, on_change) for v in value)
    return value


def untrack(value: Any) -> Any:
    """Plain dicts and lists again: for copies that must not report to the session."""
    if isinstance(value, dict):
        return {k: untrack(v) for k, v in value.items()}
    if isinstance(value, list):
        return [untrack(v) for v in value]
    if type(value) is tuple:
        return tuple(untrack(v) for v in value)
    return value


class TrackedDict(dict[Any, Any]):
    """A dict that calls ``on_change`` after every mutation."""

    __slots__ = ("_on_change",)

    def __init__(self, data: dict[Any, Any], on_change: OnChange) -> None:
        super().__init__(data)
        self._on_change = on_change

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        return (dict, (untrack(self),))

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self._on_change()

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self._on_change()

    def __ior__(self, other: Any) -> TrackedDict:  # type: ignore[misc]
        super().__ior__(other)
        self._on_change()
        return self

    def clear(self) -> None:
        super().clear()
        self._on_change()

    def pop(self, *args: Any) -> Any:
        value = super().pop(*args)
        self._on_change()
        return value

    def popitem(self) -> tuple[Any, Any]:
        item = super().popitem()
        self._on_change()
        return item

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self._on_change()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._on_change()


class TrackedList(list[Any]):
    """A list that calls ``on_change`` after every mutation."""

    __slots__ = ("_on_change",)

    def __init__(self, data: list[Any], on_change: OnChange) -> None:
        super().__init__(data)
        self._on_change = on_change

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        return (list, (untrack(self),))

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        self._on_change()

    def __delitem__(self, index: Any) -> None:
        super().__delitem__(index)
        self._on_change()

    def __iadd__(self, other: Any) -> TrackedList:  # type: ignore[misc]
        super().__iadd__(other)
        self._on_change()
        return self

    def __imul__(self, count: SupportsIndex) -> TrackedList:
        super().__imul__(count)
        self._on_change()
        return self

    def append(self, value: Any) -> None:
        super().append(value)
        self._on_change()

    def extend(self, values: Any) -> None:
        super().extend(values)
        self._on_change()

    def insert(self, index: SupportsIndex, value: Any) -> None:
        super().insert(index, value)
        self._on_change()

    def pop(self, index: SupportsIndex = -1) -> Any:
        value = super().pop(index)
        self._on_change()
        return value

    def remove(self, value: Any) -> None:
        super().remove(value)
        self._on_change()

    def clear(self) -> None:
        super().clear()
        self._on_change()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        super().sort(*args, **kwargs)
        self._on_change()

    def reverse(self) -> None:
        super().reverse()
        self._on_change()
