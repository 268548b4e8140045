"""Helpers shared by the tests: the cookie, the raw files, open descriptors, an I/O spy.

Everything here observes from the outside: the session files on disk (read by SQLite
itself), the descriptors this process holds open (``/proc/self/fd``) and the spy.
The spy is how the "costs nothing" claims (lazy sessions, rejected cookies, per-key
reads) are proved without mocking the store: it only *observes* the real calls.

* Python-level filesystem calls are seen through audit events (``open``, ``os.*``) and
  through call-through wrappers of ``os.stat`` / ``os.lstat`` (which raise no audit
  event);
* SQLite's own file I/O, which happens in C, is seen through an apsw VFS that inherits
  every method from the default VFS and counts opens and bytes read per file.
"""

from __future__ import annotations

import errno
import gc
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw
import pytest
from flask import Flask, session
from flask.testing import FlaskClient

from sqlite_session.store import REVALIDATE_AFTER

ROOT = Path(__file__).resolve().parent.parent
COOKIE = "session"


def session_files(directory: Path) -> list[str]:
    """The session files in ``directory`` (no temporary or journal files)."""
    if not directory.exists():
        return []
    return sorted(name for name in os.listdir(directory) if name.endswith(".session"))


def stored_sizes(path: str | Path) -> list[tuple[str, int]]:
    """What a session file holds, read by SQLite itself: (key, bytes of its value) by key."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return [(k, n) for k, n in conn.execute("SELECT key, length(value) FROM kv ORDER BY key")]
    finally:
        conn.close()


def open_session_files(directory: str | Path) -> list[str]:
    """The session files (not -wal/-shm) this process holds open, by /proc/self/fd."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)) and target.endswith(".session"):
            found.append(target)
    return found


def add_counter(app: Flask, *, permanent: bool = False, pad: int = 0) -> Flask:
    """Give ``app`` the counter the tests share, and return it.

    ``/count`` (GET or POST) adds one to ``session["n"]`` and answers the new count, also
    writing ``pad`` bytes under ``"pad"`` when asked (a write big enough to reach the
    ``-wal``) and making the session permanent if ``permanent``; ``/read`` answers the
    count (``None`` before any); ``/clear`` empties the session.
    """

    @app.route("/count", methods=["GET", "POST"])
    def count() -> str:
        session["n"] = session.get("n", 0) + 1
        if pad:
            session["pad"] = "x" * pad
        if permanent:
            session.permanent = True
        return str(session["n"])

    @app.get("/read")
    def read() -> str:
        return str(session.get("n"))

    @app.get("/clear")
    def clear() -> str:
        session.clear()
        return "ok"

    return app


def cookie_value(client: FlaskClient, name: str = COOKIE) -> str | None:
    """The session cookie the client currently holds, or None."""
    cookie = client.get_cookie(name)
    return cookie.value if cookie else None


def sid_of(client: FlaskClient) -> str:
    """The session id carried by the client's cookie (the part before the signature)."""
    value = cookie_value(client)
    assert value, "the client holds no session cookie"
    return value.rpartition(".")[0]


def session_path(session_dir: Path, sid: str) -> Path:
    return session_dir / f"{sid}.session"


def scramble_data_pages(path: Path) -> None:
    """Garbage over the data pages only: the header and the meta row stay readable."""
    with path.open("r+b") as handle:
        for page in range(4, path.stat().st_size // 1024):
            handle.seek(page * 1024)
            handle.write(b"\xa5" * 1024)


def stored_rows(session_dir: Path, sid: str) -> dict[str, bytes]:
    """Every key and encoded value of a session file, read directly with apsw."""
    conn = apsw.Connection(str(session_path(session_dir, sid)), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return {key: bytes(value) for key, value in conn.execute("SELECT key, value FROM kv")}
    finally:
        conn.close()


def stored_meta(session_dir: Path, sid: str) -> dict[str, Any]:
    """The ``meta`` row of a session file as a dict."""
    conn = apsw.Connection(str(session_path(session_dir, sid)), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        cursor = conn.execute("SELECT * FROM meta")
        row = cursor.fetchone()
        assert row is not None, "a session file holds one meta row"
        names = [d[0] for d in cursor.getdescription()]
        return dict(zip(names, row, strict=True))
    finally:
        conn.close()


def after_revalidation() -> None:
    """Wait until pooled connections check their file's path again.

    A change made by hand (a file deleted, replaced or touched behind the store's back)
    is seen by a process holding the file open only from then on; changes made through
    the store are seen at once.
    """
    time.sleep(REVALIDATE_AFTER)


def set_stored_expiry(session_dir: Path, sid: str, expires_at: float) -> None:
    """Rewrite a session's stored expiry, as time passing would."""
    conn = apsw.Connection(str(session_path(session_dir, sid)))
    try:
        conn.execute("UPDATE meta SET expires_at = ?", (expires_at,))
    finally:
        conn.close()


class IoLog:
    """What the spy saw under one directory while it was active."""

    def __init__(self, root: Path) -> None:
        # both spellings, computed before os.lstat is wrapped (realpath calls it)
        self.roots = {os.path.abspath(root), os.path.realpath(root)}
        self.events: list[tuple[str, str]] = []  # (operation, path)
        self.sqlite_bytes_read: dict[str, int] = {}

    def under(self, path: object) -> str | None:
        """``path`` as a string when it names something under the spied directory."""
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return None
        full = os.path.abspath(path)
        for root in self.roots:
            if full == root or full.startswith(root + os.sep):
                return full
        return None

    def record(self, operation: str, path: object) -> None:
        full = self.under(path)
        if full is not None:
            self.events.append((operation, full))

    @property
    def bytes_read(self) -> int:
        return sum(self.sqlite_bytes_read.values())


_active: list[IoLog] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _active or not (event == "open" or event.startswith("os.")):
        return
    for arg in args:
        for log in _active:
            log.record(event, arg)


_hook_installed = False


def _install_hook() -> None:
    """Audit hooks cannot be removed, so one hook serves every spy of the process."""
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)
        _hook_installed = True


_BASE_VFS = apsw.vfs_names()[0]  # the platform's default ("unix"), which the spy wraps


class _SpyFile(apsw.VFSFile):
    def __init__(self, log: IoLog, name: Any, flags: list[int]) -> None:
        super().__init__(_BASE_VFS, name, flags)
        text = name if isinstance(name, str) or name is None else name.filename()
        self._path = text or ""
        self._log = log
        log.record("sqlite.open", self._path)

    def xRead(self, amount: int, offset: int) -> bytes:
        data: bytes = super().xRead(amount, offset)
        if self._log.under(self._path) is not None:
            self._log.sqlite_bytes_read[self._path] = (
                self._log.sqlite_bytes_read.get(self._path, 0) + amount
            )
        return data


class _SpyVFS(apsw.VFS):
    def __init__(self, log: IoLog) -> None:
        self._log = log
        super().__init__("core-test-spy", _BASE_VFS, makedefault=True)

    def xOpen(self, name: Any, flags: list[int]) -> apsw.VFSFile:
        return _SpyFile(self._log, name, flags)

    def xAccess(self, pathname: str, flags: int) -> bool:
        self._log.record("sqlite.access", pathname)
        result: bool = super().xAccess(pathname, flags)
        return result


@contextmanager
def spy_io(root: Path) -> Iterator[IoLog]:
    """Record every filesystem access under ``root`` made inside the block.

    Connections opened before the block (pooled by an earlier request) do not go through
    the spy VFS, so tests build a fresh app before spying on it.
    """
    _install_hook()
    log = IoLog(root)

    def wrap(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def spy(path: Any, *args: Any, **kwargs: Any) -> Any:
            log.record(name, path)
            return real(path, *args, **kwargs)

        return spy

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "stat", wrap("os.stat", os.stat))
        patch.setattr(os, "lstat", wrap("os.lstat", os.lstat))
        vfs = _SpyVFS(log)
        _active.append(log)
        try:
            yield log
        finally:
            _active.remove(log)
            vfs.unregister()


@contextmanager
def descriptors_exhausted(spare: int = 0) -> Iterator[None]:
    """Every descriptor of this process in use but ``spare``, for the block."""
    # Earlier tests' apps, once collected, close their pooled connections: collect them
    # now, or a collection inside the block frees a descriptor.
    gc.collect()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 64, hard))
    held: list[int] = []
    try:
        while True:
            try:
                held.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        for _ in range(spare):
            os.close(held.pop())
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement run by connections opened inside the block."""
    seen: list[str] = []

    def trace(cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
        seen.append(sql)
        return True

    def hook(conn: apsw.Connection) -> None:
        conn.exec_trace = trace

    apsw.connection_hooks.append(hook)
    try:
        yield seen
    finally:
        apsw.connection_hooks.remove(hook)
