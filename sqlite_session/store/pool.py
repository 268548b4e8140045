"""The per-process pool of idle connections, emptied in a forked child."""

from __future__ import annotations

import os
import threading
import weakref
from typing import NamedTuple

import apsw

from .format import Meta
from .mirror import close_keeping_mirror


class Pooled(NamedTuple):
    """An idle connection and what its last checkout knew about its file."""

    conn: apsw.Connection
    inode: tuple[int, int]
    checked: float  # time.monotonic() of the last lstat that found the path naming inode
    meta: Meta | None  # the meta row as of the connection's data version below
    data_version: int


_live_pools: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()
_fork_hook_installed = False


def _forget_inherited_connections() -> None:
    """In a forked child, before it runs anything else: empty every pool.

    SQLite connections must not cross a fork. This runs from ``os.register_at_fork``
    instead of comparing ``os.getpid()`` at each checkout, a system call on every request.
    Each pool also gets a fresh lock, in case another thread held it at the fork.
    """
    for pool in list(_live_pools):
        pool.after_fork()


class ConnectionPool:
    """A bounded, per-process LRU of idle connections, keyed by file path.

    Opening a connection and loading the schema costs far more than a read on an open
    one, so idle connections are kept. A connection is handed to one thread at a time.
    The checkout reuses one only while the path still names the inode it was opened on
    (see :data:`~.checkout.REVALIDATE_AFTER`), which catches files deleted or replaced
    by hand. After a fork the inherited connections are dropped: SQLite connections must
    not cross a fork.
    """

    def __init__(self, capacity: int) -> None:
        global _fork_hook_installed
        self._capacity = capacity
        self._lock = threading.Lock()
        self._idle: dict[str, list[Pooled]] = {}
        self._size = 0
        if not _fork_hook_installed:  # once per process, at first use: no import side effect
            os.register_at_fork(after_in_child=_forget_inherited_connections)
            _fork_hook_installed = True
        _live_pools.add(self)

    @property
    def size(self) -> int:
        """How many idle connections the pool holds."""
        return self._size

    def after_fork(self) -> None:
        """Forget the connections inherited from the parent: the child must never use them."""
        self._lock = threading.Lock()
        self._idle = {}
        self._size = 0

    def take(self, path: str) -> Pooled | None:
        """The idle connection to ``path`` given back last, if any."""
        with self._lock:
            idle = self._idle.get(path)
            if not idle:
                return None
            pooled = idle.pop()
            self._size -= 1
            if not idle:
                del self._idle[path]
        return pooled

    def give(self, path: str, pooled: Pooled) -> None:
        """Keep an idle connection, closing the least recently used beyond capacity."""
        evicted: list[tuple[str, Pooled]] = []
        with self._lock:
            conns = self._idle.pop(path, None) or []
            conns.append(pooled)
            self._idle[path] = conns  # (re)inserted last: dicts keep insertion order
            self._size += 1
            while self._size > self._capacity:
                oldest_path = next(iter(self._idle))
                conns = self._idle[oldest_path]
                evicted.append((oldest_path, conns.pop(0)))
                self._size -= 1
                if not conns:
                    del self._idle[oldest_path]
        for old_path, old in evicted:
            close_keeping_mirror(old.conn, old_path, old.inode)

    def forget(self, path: str) -> None:
        """Close the idle connections of a file that has just been removed."""
        with self._lock:
            conns = self._idle.pop(path, [])
            self._size -= len(conns)
        for pooled in conns:
            pooled.conn.close()

    def close_idle(self) -> int:
        """Close every idle connection, giving its descriptors back; returns how many."""
        with self._lock:
            idle, self._idle, self._size = self._idle, {}, 0
        closed = 0
        for path, conns in idle.items():
            for pooled in conns:
                close_keeping_mirror(pooled.conn, path, pooled.inode)
                closed += 1
        return closed
