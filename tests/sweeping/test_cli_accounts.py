"""``sqlite-session sessions``, ``revoke`` and ``reindex``, run for real as the console
script: an operator lists and logs out a compromised account's sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sqlite_session.ids import new_session_id
from sqlite_session.store import Changes, SessionStore
from sqlite_session.store.accounts import Accounts
from sqlite_session.store.user_index import UserIndex, new_handle

CONSOLE_SCRIPT = str(Path(sys.executable).parent / "sqlite-session")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CONSOLE_SCRIPT, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def logged_in(session_dir: Path) -> dict[str, list[str]]:
    """Alice on two devices, bob on one: their session ids."""
    session_dir.mkdir(mode=0o700)
    store = SessionStore(str(session_dir))
    accounts = Accounts(store)
    sids: dict[str, list[str]] = {"alice": [], "bob": []}
    for user in ("alice", "alice", "bob"):
        sid = new_session_id()
        store.create(sid, Changes(upserts={"k": b"1"}, expires_at=time.time() + 3600))
        accounts.assign(sid, user, agent=f"{user}'s browser")
        sids[user].append(sid)
    return sids


def test_sessions_lists_a_users_sessions(
    session_dir: Path, logged_in: dict[str, list[str]]
) -> None:
    result = run("sessions", str(session_dir), "--user", "alice", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 2
    for row in rows:
        assert {"handle", "created", "last_seen", "expires"} <= row.keys()
        assert row["agent"] == "alice's browser"
        assert not any(sid in result.stdout for sid in logged_in["alice"])  # never the id
    text = run("sessions", str(session_dir), "--user", "alice")
    assert text.returncode == 0 and len(text.stdout.splitlines()) == 2
    assert rows[0]["handle"] in text.stdout


def test_revoke_one_by_handle_then_all(session_dir: Path, logged_in: dict[str, list[str]]) -> None:
    rows = json.loads(run("sessions", str(session_dir), "--user", "alice", "--json").stdout)
    one = run("revoke", str(session_dir), "--user", "alice", "--handle", rows[0]["handle"])
    assert one.returncode == 0 and one.stdout.strip() == "revoked 1 session of user alice"
    left = json.loads(run("sessions", str(session_dir), "--user", "alice", "--json").stdout)
    assert [r["handle"] for r in left] == [rows[1]["handle"]]
    everything = run("revoke", str(session_dir), "--user", "alice", "--all")
    assert everything.stdout.strip() == "revoked 1 session of user alice"
    for sid in logged_in["alice"]:
        assert not (session_dir / f"{sid}.session").exists()
    assert (session_dir / f"{logged_in['bob'][0]}.session").exists()
    # A handle of another user's session revokes nothing.
    bob = json.loads(run("sessions", str(session_dir), "--user", "bob", "--json").stdout)
    wrong = run("revoke", str(session_dir), "--user", "alice", "--handle", bob[0]["handle"])
    assert wrong.stdout.strip() == "revoked 0 sessions of user alice"
    assert (session_dir / f"{logged_in['bob'][0]}.session").exists()


def test_usage_errors_and_a_missing_directory(tmp_path: Path) -> None:
    assert run("revoke", str(tmp_path), "--user", "alice").returncode == 2  # --all or --handle
    assert run("sessions", str(tmp_path)).returncode == 2  # --user is required
    missing = run("sessions", str(tmp_path / "nope"), "--user", "alice")
    assert missing.returncode == 1 and "no such directory" in missing.stderr


def test_reindex_rebuilds_a_lost_index(session_dir: Path, logged_in: dict[str, list[str]]) -> None:
    UserIndex(str(session_dir)).discard()
    result = run("reindex", str(session_dir))
    assert result.returncode == 0
    assert result.stdout.strip() == "user index rebuilt: 3 sessions belong to a user"
    rows = json.loads(run("sessions", str(session_dir), "--user", "bob", "--json").stdout)
    assert len(rows) == 1
    assert os.path.exists(session_dir / f"{logged_in['bob'][0]}.session")


def test_every_handle_can_follow_the_handle_option() -> None:
    """A handle never starts with "-": argparse took such a one for an option, and
    ``revoke --handle H`` failed with a usage error (one handle in 64 did)."""
    handles = [new_handle() for _ in range(5000)]
    assert not [h for h in handles if h.startswith("-")]
    assert len(set(handles)) == len(handles)
