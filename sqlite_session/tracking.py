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

from collections.abc import Callable, Iterable
from itertools import chain, compress, repeat
from typing import Any, SupportsIndex

OnChange = Callable[[], None]
_SCALARS = frozenset({str, int, float, bool, type(None)})  # (never tracked: a quick exit)


def track(value: Any, on_change: OnChange) -> Any:
    """Return ``value`` with every nested dict and list replaced by a tracked twin.

    Done a level of nesting at a time: the containers to wrap are found among all of a
    level's items at once, by type, with C-level iteration (``map``, ``compress``).
    Most items are scalars, and a Python loop over them cost more than decoding them.
    """
    top = _twin(value, on_change)
    kind = type(top)
    if (kind is TrackedList and set(map(type, top)) <= _SCALARS) or (
        kind is TrackedDict and set(map(type, top.values())) <= _SCALARS
    ):
        return top  # a list or dict of scalars, the commonest container value: done
    level = _Level()
    level.add(top)
    while level.dicts or level.lists:
        level = level.track_children(on_change)
    return top


def _twin(value: Any, on_change: OnChange) -> Any:
    """``value`` itself tracked (a dict's or list's children are left to the caller)."""
    twin: TrackedDict | TrackedList
    tracked_type = _TRACKED_TYPE.get(type(value))
    if tracked_type is not None:
        twin = tracked_type(value)
    elif isinstance(value, dict):
        twin = TrackedDict(value)
    elif isinstance(value, list):
        twin = TrackedList(value)
    elif type(value) is tuple and any(map(_holds_changeable, set(map(type, value)))):
        return tuple(track(item, on_change) for item in value)  # (rare and small)
    else:
        return value
    twin.on_change = on_change
    return twin


def _holds_changeable(kind: type) -> bool:
    """Whether :func:`track` replaces a value of this type (or one inside it)."""
    return issubclass(kind, (dict, list)) or kind is tuple


class _Level:
    """The tracked containers at one depth of a value, whose children are still plain."""

    def __init__(self) -> None:
        self.dicts: list[TrackedDict] = []
        self.lists: list[TrackedList] = []

    def add(self, twin: Any) -> None:
        if isinstance(twin, TrackedDict):
            self.dicts.append(twin)
        elif isinstance(twin, TrackedList):
            self.lists.append(twin)

    def track_children(self, on_change: OnChange) -> _Level:
        """Replace the children to track by their twins; return the level below."""
        below = _Level()
        if self.dicts:
            below.track_dict_values(self.dicts, on_change)
        if self.lists:
            below.track_list_items(self.lists, on_change)
        return below

    def track_dict_values(self, dicts: list[TrackedDict], on_change: OnChange) -> None:
        values = list(map(dict.values, dicts))
        kinds = set(map(type, chain.from_iterable(values)))
        if len(kinds) == 1 and kinds <= _TRACKED_TYPE.keys():  # e.g. a dict of lists
            for mapping, items in zip(dicts, values, strict=True):
                twins = self.bulk_twins(items, on_change)
                dict.update(mapping, zip(list(mapping), twins, strict=True))
        elif not kinds <= _SCALARS:
            labels = map(zip, map(repeat, dicts), dicts)
            self.track_slots(kinds, dict.__setitem__, labels, values, on_change)

    def track_list_items(self, lists: list[TrackedList], on_change: OnChange) -> None:
        kinds = set(map(type, chain.from_iterable(lists)))
        if len(kinds) == 1 and kinds <= _TRACKED_TYPE.keys():  # e.g. a list of records
            for sequence in lists:
                list.__setitem__(sequence, slice(None), self.bulk_twins(sequence, on_change))
        elif not kinds <= _SCALARS:
            labels = map(zip, map(repeat, lists), map(range, map(len, lists)))
            self.track_slots(kinds, list.__setitem__, labels, lists, on_change)

    def bulk_twins(self, items: Iterable[Any], on_change: OnChange) -> list[Any]:
        """Twins of ``items``, all plain dicts or all plain lists, added to this level.

        The twins are built by a C-level ``map``: a value is often a list of records,
        and building them one by one through :func:`_twin` cost four times as much.
        """
        twins = list(items)
        if twins:
            twins = list(map(_TRACKED_TYPE[type(twins[0])], twins))
            for twin in twins:
                twin.on_change = on_change
            (self.dicts if isinstance(twins[0], dict) else self.lists).extend(twins)
        return twins

    def track_slots(
        self,
        kinds: set[type],
        setitem: Callable[[Any, Any, Any], None],
        labels: Iterable[Iterable[Any]],
        items: Iterable[Iterable[Any]],
        on_change: OnChange,
    ) -> None:
        """Replace the items of mixed kinds that need tracking, one by one.

        ``labels`` and ``items`` give, for each parent, its (parent, key or index) pairs
        and its items, in step; ``kinds`` are the types of all the items.
        """
        wrapped = set(filter(_holds_changeable, kinds))
        if not wrapped:
            return
        needed = map(wrapped.__contains__, map(type, chain.from_iterable(items)))
        for parent, label in list(compress(chain.from_iterable(labels), needed)):
            child = _twin(parent[label], on_change)
            setitem(parent, label, child)  # (not parent[label] = : no change to report)
            self.add(child)


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
    """A dict that calls ``on_change`` after every mutation (made by :func:`track`)."""

    # No __init__ and no setter: the C constructor copies the data and track() sets
    # on_change, with no Python call per container.
    __slots__ = ("on_change",)
    on_change: OnChange  # what the container calls after each mutation

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        return (dict, (untrack(self),))

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.on_change()

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self.on_change()

    def __ior__(self, other: Any) -> TrackedDict:  # type: ignore[misc]
        super().__ior__(other)
        self.on_change()
        return self

    def clear(self) -> None:
        super().clear()
        self.on_change()

    def pop(self, *args: Any) -> Any:
        value = super().pop(*args)
        self.on_change()
        return value

    def popitem(self) -> tuple[Any, Any]:
        item = super().popitem()
        self.on_change()
        return item

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self.on_change()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self.on_change()


class TrackedList(list[Any]):
    """A list that calls ``on_change`` after every mutation (made by :func:`track`)."""

    __slots__ = ("on_change",)
    on_change: OnChange  # what the container calls after each mutation

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        return (list, (untrack(self),))

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        self.on_change()

    def __delitem__(self, index: Any) -> None:
        super().__delitem__(index)
        self.on_change()

    def __iadd__(self, other: Any) -> TrackedList:  # type: ignore[misc]
        super().__iadd__(other)
        self.on_change()
        return self

    def __imul__(self, count: SupportsIndex) -> TrackedList:
        super().__imul__(count)
        self.on_change()
        return self

    def append(self, value: Any) -> None:
        super().append(value)
        self.on_change()

    def extend(self, values: Any) -> None:
        super().extend(values)
        self.on_change()

    def insert(self, index: SupportsIndex, value: Any) -> None:
        super().insert(index, value)
        self.on_change()

    def pop(self, index: SupportsIndex = -1) -> Any:
        value = super().pop(index)
        self.on_change()
        return value

    def remove(self, value: Any) -> None:
        super().remove(value)
        self.on_change()

    def clear(self) -> None:
        super().clear()
        self.on_change()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        super().sort(*args, **kwargs)
        self.on_change()

    def reverse(self) -> None:
        super().reverse()
        self.on_change()


_TRACKED_TYPE: dict[type, type[TrackedDict] | type[TrackedList]] = {
    dict: TrackedDict,
    list: TrackedList,
}
