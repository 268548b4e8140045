"""What an entry of a session directory is, from its name alone.

The store names every file it creates (see :mod:`sqlite_session.store.format`); a name
it never gives is foreign, and the janitor leaves such a file alone.
"""

from __future__ import annotations

import enum
import re

from ..store import SUFFIX

SIDECARS = ("-journal", "-wal", "-shm")

_TEMPORARY = re.compile(r"\.tmp-[0-9a-f]+(?:-journal|-wal|-shm)?|\.probe-[0-9]+")


class Kind(enum.Enum):
    """The kinds of names found in a session directory."""

    SESSION = "session"  # <id>.session
    TEMPORARY = "temporary"  # .tmp-<hex> (and its side files), .probe-<pid>
    SIDECAR = "sidecar"  # <id>.session-journal, -wal, -shm
    FOREIGN = "foreign"  # a name we never create


def kind_of(name: str) -> Kind:
    """The kind of file ``name`` would be, were it a regular file."""
    if name.endswith(SUFFIX) and not name.startswith("."):
        return Kind.SESSION
    if _TEMPORARY.fullmatch(name):
        return Kind.TEMPORARY
    if name.endswith(SIDECARS) and main_file(name).endswith(SUFFIX):
        return Kind.SIDECAR
    return Kind.FOREIGN


def main_file(name: str) -> str:
    """The file a journal, WAL or SHM file belongs to (``name`` itself for any other)."""
    return name.rsplit("-", 1)[0] if name.endswith(SIDECARS) else name


def session_id(session_name: str) -> str:
    """The session id in a session file's name (not validated)."""
    return session_name[: -len(SUFFIX)]
