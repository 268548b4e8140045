"""The session directory: resolved once, created private, checked before anything is stored.

Shared by the interface (at construction) and the store (which re-creates a directory
removed while the app runs, with the same checks). Neither Flask nor SQLite is spoken here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat

from ..errors import SessionDirectoryError

log = logging.getLogger("sqlite_session")

_UNSAFE_BITS = ((stat.S_IWOTH, "every user"), (stat.S_IWGRP, "its group"))


def resolve_session_path(path: str | os.PathLike[str]) -> str:
    """The absolute session path: an empty one raises, a relative one is resolved and logged.

    A relative path is resolved once, against the working directory at start-up (a
    server started with another ``--chdir`` and a cron sweeper would otherwise look at
    different directories); the warning names the absolute path in use.
    """
    text = os.fspath(path)
    if not text:
        raise SessionDirectoryError(
            "the session path is empty: set it to a private directory, for example a "
            "tmpfs such as /run/myapp/sessions"
        )
    absolute = os.path.abspath(text)
    if not os.path.isabs(text):
        log.warning("relative session path %r resolved to %s", text, absolute)
    return absolute


def prepare_directory(path: str, *, allow_unsafe: bool) -> str:
    """Create the session directory (0700) or check an existing one; return its real path.

    The real path (symlinks resolved once) is what the store uses: SQLite refuses to
    open a file whose path holds a symlink anywhere, so a directory reached through
    ``/var/run -> /run`` is fine while a symlink planted at a session's name is not.
    Refused unless ``allow_unsafe``: a directory owned by another user, or writable by
    its group or by others (a member of the group could rename one user's session file
    onto another's id), or under a directory that others may write to (see
    :func:`_check_ancestors`). A POSIX ACL that grants write to anyone shows in the group
    bits.
    """
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        real = os.path.realpath(path)
        st = os.stat(real)
    except FileExistsError as exc:
        raise SessionDirectoryError(f"session path {path!r} exists and is not a directory") from exc
    except OSError as exc:
        raise SessionDirectoryError(f"cannot create session directory {path!r}: {exc}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise SessionDirectoryError(f"session path {path!r} exists and is not a directory")
    if not allow_unsafe:
        _check_private(real, st)
        _check_ancestors(real)
    _probe_writable(real)
    return real


def _check_private(path: str, st: os.stat_result) -> None:
    """Refuse a directory that another user owns or may write to."""
    if st.st_uid != os.geteuid():
        raise SessionDirectoryError(
            f"session directory {path!r} is owned by uid {st.st_uid}, not by this process "
            f"(uid {os.geteuid()}); pass allow_unsafe_directory=True to accept it"
        )
    for bit, who in _UNSAFE_BITS:
        if st.st_mode & bit:
            raise SessionDirectoryError(
                f"session directory {path!r} is writable by {who} (mode "
                f"{stat.filemode(st.st_mode)}): others could plant or swap session files "
                f"in it. Run `chmod 700 {path}` or pass allow_unsafe_directory=True"
            )


def _check_ancestors(path: str) -> None:
    """Refuse a directory under one that others may write to (as OpenSSH's StrictModes).

    Whoever may write to an ancestor can rename the session directory away and put one
    of their own in its place, full of forged sessions. Safe: an ancestor writable by
    its owner only, or a sticky one (``/tmp``) owned by root or by this process's user.
    """
    ancestor = os.path.dirname(path)
    while True:
        try:
            st = os.stat(ancestor)
        except OSError as exc:
            message = f"cannot check {ancestor!r}, above {path!r}: {exc}"
            raise SessionDirectoryError(message) from exc
        sticky_and_trusted = st.st_mode & stat.S_ISVTX and st.st_uid in (0, os.geteuid())
        for bit, who in _UNSAFE_BITS:
            if st.st_mode & bit and not sticky_and_trusted:
                raise SessionDirectoryError(
                    f"session directory {path!r} lies under {ancestor!r}, which is writable "
                    f"by {who} (mode {stat.filemode(st.st_mode)}): they could swap the "
                    f"session directory for one of their own. Run `chmod go-w {ancestor}` "
                    f"(or `chmod +t` if root or this user owns it), choose a directory "
                    f"elsewhere, or pass allow_unsafe_directory=True"
                )
        parent = os.path.dirname(ancestor)
        if parent == ancestor:
            return
        ancestor = parent


def _probe_writable(path: str) -> None:
    """Create and remove a file, so an unwritable directory fails now, not at a request."""
    probe = os.path.join(path, f".probe-{os.getpid()}")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
        with contextlib.suppress(FileNotFoundError):  # a sweep with --grace 0 took it already
            os.unlink(probe)
    except OSError as exc:
        raise SessionDirectoryError(f"session directory {path!r} is not writable: {exc}") from exc


def recreate_directory(path: str, *, allow_unsafe: bool) -> None:
    """Re-create a session directory removed while the app runs, with the same checks."""
    log.warning("session directory %s has disappeared; re-creating it", path)
    prepare_directory(path, allow_unsafe=allow_unsafe)
