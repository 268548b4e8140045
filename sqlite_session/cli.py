"""The ``sqlite-session`` command (also ``python -m sqlite_session``): sweep, stats, and a
user's sessions (sessions, revoke, reindex).

Exit status: 0 on success (also when another sweep of PATH was running and this one
stood down), 1 when PATH is missing, not a directory or cannot be read (or, for a sweep,
written), when a sweep found only foreign entries in it (the wrong directory?) or could
not remove some files, 2 for a usage error (argparse's own).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from . import __version__
from .janitor import DEFAULT_GRACE, DEFAULT_LOCK_TIMEOUT, SweepReport, stats, sweep, sweep_lock
from .janitor.directory_stats import DEFAULT_RESERVE_FRACTION
from .options import check_option
from .store import SessionStore
from .store.accounts import Accounts

PROG = "sqlite-session"


class _Progress:
    """A progress line on stderr, rewritten at most twice a second (only on a terminal)."""

    def __init__(self) -> None:
        self._last = 0.0
        self.shown = False

    def __call__(self, report: SweepReport) -> None:
        now = time.monotonic()
        if now - self._last < 0.5:
            return
        self._last = now
        self.shown = True
        sys.stderr.write(
            f"\rscanned {report.entries} entries: {report.sessions} sessions, "
            f"{report.removed} removed, {report.busy} busy"
        )
        sys.stderr.flush()

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def _check_directory(path: str, writable: bool) -> str | None:
    """Why ``path`` cannot be swept or examined, or None if it can."""
    if not os.path.exists(path):
        return f"{path}: no such directory"
    if not os.path.isdir(path):
        return f"{path}: not a directory"
    if not os.access(path, os.R_OK | os.X_OK):
        return f"{path}: cannot read the directory (permission denied)"
    if writable and not os.access(path, os.W_OK | os.X_OK):
        return f"{path}: cannot remove files from the directory (permission denied)"
    return None


def _sweep(args: argparse.Namespace) -> int:
    def event(what: str, name: str) -> None:
        if args.verbose or what.startswith("would remove"):
            print(f"{what}: {name}")

    progress = _Progress() if sys.stderr.isatty() else None
    directory = os.path.realpath(args.path)  # once: SQLite refuses symlinks in a path
    run = functools.partial(
        sweep,
        directory,
        dry_run=args.dry_run,
        grace=args.grace,
        lock_timeout=args.lock_timeout,
        on_event=event,
        progress=progress,
    )
    if args.dry_run:
        report = run()
    else:
        with sweep_lock(directory) as lock:
            if lock is None:
                print(f"{PROG}: another sweep of {args.path} is running; nothing done")
                return 0
            report = run()
            lock.record_sweep(time.time())
    if progress is not None:
        progress.done()
    if not args.quiet:
        print(report.summary())
    if report.nothing_of_ours:
        print(
            f"{PROG}: error: {args.path} holds no session files, only {report.foreign} "
            "foreign entries: is it the session directory?",
            file=sys.stderr,
        )
        return 1
    if report.errors:
        print(f"{PROG}: error: {report.errors} files could not be removed", file=sys.stderr)
        return 1
    return 0


def _format_time(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")


def _stats(args: argparse.Namespace) -> int:
    result = stats(args.path, reserve_fraction=args.reserve_fraction, detail=args.detail)
    if args.json:
        print(json.dumps({**vars(result), "below_reserve": result.below_reserve}, sort_keys=True))
        return 0
    per_session = result.session_bytes // result.sessions if result.sessions else 0
    print(f"sessions:      {result.sessions}")
    print(f"bytes on disk: {result.session_bytes} ({per_session} per session)")
    print(f"expired:       {result.expired} (awaiting the sweeper)")
    print(f"oldest expiry: {_format_time(result.oldest_expiry)}")
    print(f"newest expiry: {_format_time(result.newest_expiry)}")
    print(f"other files:   {result.other_files} ({result.other_bytes} bytes)")
    if result.anonymous is not None:
        print(f"live sessions: {result.anonymous} anonymous, {result.established} established")
    print(
        f"free space:    {result.free_bytes} of {result.total_bytes} bytes "
        f"(reserve {result.reserve_bytes} at {args.reserve_fraction:g})"
    )
    if result.below_reserve:
        print("policy:        below the reserve: new anonymous sessions are not stored")
    else:
        print("policy:        above the reserve: every new session is stored")
    return 0


def _accounts(path: str) -> Accounts:
    # No pool: a command that looks at a few files must not keep them open.
    return Accounts(SessionStore(os.path.realpath(path), connection_cache_size=0))


def _sessions(args: argparse.Namespace) -> int:
    found = _accounts(args.path).sessions(args.user)
    rows = [
        {
            "handle": info.handle,
            "created": _format_time(info.established_at),
            "last_seen": _format_time(info.last_seen),
            "expires": _format_time(info.expires_at),
            "agent": info.agent,
            "address": info.address,
        }
        for info in found
    ]
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        print(
            f"{row['handle']}  created {row['created']}  last seen {row['last_seen']}  "
            f"expires {row['expires']}  {row['agent'] or '-'}  {row['address'] or '-'}"
        )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    accounts = _accounts(args.path)
    if args.all:
        count = accounts.revoke_all(args.user)
    else:
        count = int(accounts.revoke(args.user, args.handle))
    print(f"revoked {count} session{'' if count == 1 else 's'} of user {args.user}")
    return 0


def _reindex(args: argparse.Namespace) -> int:
    count = _accounts(args.path).rebuild()
    print(f"user index rebuilt: {count} sessions belong to a user")
    return 0


def _reserve_fraction(text: str) -> float:
    """``--reserve-fraction``, checked by the interface's rule for ``reserve_fraction``."""
    try:
        value = float(text)
        check_option("reserve_fraction", value, "--reserve-fraction")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _path_command(
    commands: Any, name: str, help: str, description: str, *, user: bool = False
) -> Any:
    """A subcommand that takes PATH (and, with ``user``, ``--user ID``)."""
    command = commands.add_parser(name, help=help, description=description)
    command.add_argument("path", metavar="PATH", help="the session directory")
    if user:
        command.add_argument("--user", required=True, metavar="ID", help="the user's id")
    return command


def _add_account_commands(commands: Any) -> None:
    sessions_cmd = _path_command(
        commands,
        "sessions",
        "list a user's sessions",
        "List the live sessions of one user (as recorded at login), one line each: "
        "handle, created, last seen, expires, user agent and address.",
        user=True,
    )
    sessions_cmd.add_argument("--json", action="store_true", help="one JSON array")
    sessions_cmd.set_defaults(handler=_sessions, writable=True)

    revoke_cmd = _path_command(
        commands,
        "revoke",
        "log a user out of some or all sessions",
        "End sessions of one user at once, for every worker (a compromised account): "
        "all of them, or the one of a handle shown by `sessions`.",
        user=True,
    )
    which = revoke_cmd.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every session of the user")
    which.add_argument("--handle", metavar="H", help="the session of this handle")
    revoke_cmd.set_defaults(handler=_revoke, writable=True)

    reindex_cmd = _path_command(
        commands,
        "reindex",
        "rebuild the user index from the session files",
        "Rebuild PATH's user index from the session files (also done automatically "
        "when it is missing or damaged). Logs nobody out.",
    )
    reindex_cmd.set_defaults(handler=_reindex, writable=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Maintain a sqlite_session session directory."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sweep_cmd = commands.add_parser(
        "sweep",
        help="remove expired sessions",
        description="Remove the expired sessions under PATH (their expiry is read from "
        "each session file; no app configuration is needed), plus stale temporary files "
        "and orphan journals. Safe while the app is serving requests.",
    )
    sweep_cmd.add_argument("path", metavar="PATH", help="the session directory")
    sweep_cmd.add_argument(
        "--dry-run", action="store_true", help="list what would be removed; remove nothing"
    )
    sweep_cmd.add_argument(
        "-v", "--verbose", action="store_true", help="report every file acted on"
    )
    sweep_cmd.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print nothing unless something is wrong (for cron, which mails any output)",
    )
    sweep_cmd.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help="age before leftover temporary, journal or unreadable files are removed "
        f"(default {DEFAULT_GRACE:g})",
    )
    sweep_cmd.add_argument(
        "--lock-timeout",
        type=float,
        default=DEFAULT_LOCK_TIMEOUT,
        metavar="SECONDS",
        help="how long to wait for a session in use before skipping it "
        f"(default {DEFAULT_LOCK_TIMEOUT:g})",
    )
    sweep_cmd.set_defaults(handler=_sweep, writable=True)

    stats_cmd = _path_command(
        commands,
        "stats",
        "count sessions, bytes on disk and expired sessions",
        "Session count, bytes on disk, expired count and oldest/newest expiry of PATH, "
        "from one stat per file (for monitoring).",
    )
    stats_cmd.add_argument("--json", action="store_true", help="one JSON object")
    stats_cmd.add_argument(
        "--reserve-fraction",
        type=_reserve_fraction,
        default=DEFAULT_RESERVE_FRACTION,
        metavar="F",
        help="the app's reserve_fraction, to compare the free space with "
        f"(default {DEFAULT_RESERVE_FRACTION:g})",
    )
    stats_cmd.add_argument(
        "--detail",
        action="store_true",
        help="also count anonymous and established sessions (opens every file: slower)",
    )
    stats_cmd.set_defaults(handler=_stats, writable=False)
    _add_account_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    writable = args.writable and not getattr(args, "dry_run", False)
    problem = _check_directory(args.path, writable=writable)
    if problem is not None:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 1
    try:
        status: int = args.handler(args)
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return status
