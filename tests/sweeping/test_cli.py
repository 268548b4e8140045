"""The ``sqlite-session`` command, run for real: the console script and ``python -m``."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from core_helpers import session_files

from sqlite_session.ids import new_session_id
from sqlite_session.store import Changes, SessionStore

CONSOLE_SCRIPT = str(Path(sys.executable).parent / "sqlite-session")
SUMMARY = re.compile(r"^removed (\d+) expired of (\d+) sessions, freeing [^,]+, in \d+\.\d+ s")


def run(*args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "sqlite_session"] if module else [CONSOLE_SCRIPT]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def populated(session_dir: Path) -> Path:
    """Three expired and two live sessions."""
    session_dir.mkdir(mode=0o700)
    store = SessionStore(str(session_dir))
    for expires_in in (-10, -10, -10, 3600, 3600):
        changes = Changes(upserts={"k": b"1"}, expires_at=time.time() + expires_in)
        store.create(new_session_id(), changes)
    return session_dir


@pytest.mark.parametrize("module", [False, True], ids=["console-script", "python-m"])
def test_sweep_prints_one_line_summary(populated: Path, module: bool) -> None:
    result = run("sweep", str(populated), module=module)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    match = SUMMARY.match(lines[0])
    assert match is not None and match.groups() == ("3", "5")
    assert result.stderr == ""  # no progress output when stderr is not a terminal
    assert len(session_files(populated)) == 2


def test_dry_run_lists_and_removes_nothing(populated: Path) -> None:
    before = sorted(os.listdir(populated))

    result = run("sweep", "--dry-run", str(populated))

    assert result.returncode == 0
    lines = result.stdout.splitlines()
    listed = [line for line in lines if line.startswith("would remove expired: ")]
    assert len(listed) == 3
    assert all(line.split(": ")[1] in before for line in listed)
    assert result.stdout.splitlines()[-1].startswith("would remove 3 expired of 5 sessions")
    assert sorted(os.listdir(populated)) == before


def test_verbose_names_each_file(populated: Path) -> None:
    (populated / "stray.txt").write_text("x")
    now = time.time()
    expired = {n for n in session_files(populated) if os.lstat(populated / n).st_mtime < now}

    result = run("sweep", "-v", str(populated))

    assert result.returncode == 0
    lines = result.stdout.splitlines()
    removed = {line.split(": ")[1] for line in lines if line.startswith("removed expired: ")}
    assert removed == expired
    assert "foreign: stray.txt" in result.stdout.splitlines()
    assert (populated / "stray.txt").exists()


@pytest.mark.parametrize("command", ["sweep", "stats"])
def test_missing_path_fails_clearly(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "nope"

    result = run(command, str(missing))

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == f"sqlite-session: error: {missing}: no such directory"


def test_file_instead_of_directory_fails_clearly(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")

    result = run("sweep", str(a_file))

    assert result.returncode == 1
    assert "not a directory" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory")
def test_unreadable_path_fails_clearly(populated: Path) -> None:
    populated.chmod(0o000)
    try:
        result = run("sweep", str(populated))
    finally:
        populated.chmod(0o700)
    assert result.returncode == 1
    assert "cannot read" in result.stderr


def test_usage_error_exits_2(populated: Path) -> None:
    assert run("sweep").returncode == 2
    assert run("frobnicate", str(populated)).returncode == 2


def test_stats(populated: Path) -> None:
    blocks = sum(os.lstat(populated / n).st_blocks * 512 for n in session_files(populated))

    text = run("stats", str(populated))
    as_json = run("stats", "--json", str(populated))

    assert text.returncode == as_json.returncode == 0
    assert "sessions:      5" in text.stdout and "expired:       3" in text.stdout
    assert f"bytes on disk: {blocks} " in text.stdout
    data = json.loads(as_json.stdout)
    assert (data["sessions"], data["expired"], data["session_bytes"]) == (5, 3, blocks)
    assert data["oldest_expiry"] < time.time() < data["newest_expiry"]


def test_stats_shows_the_free_space_and_the_kinds_of_sessions(populated: Path) -> None:
    store = SessionStore(str(populated))
    for _ in range(2):  # two more live sessions, anonymous
        changes = Changes(upserts={"k": b"1"}, expires_at=time.time() + 60, anonymous=True)
        store.create(new_session_id(), changes)
    st = os.statvfs(populated)

    plain = json.loads(run("stats", "--json", str(populated)).stdout)
    detail = json.loads(run("stats", "--json", "--detail", str(populated)).stdout)
    low = run("stats", "--reserve-fraction", "0.999999", "--detail", str(populated))

    assert (plain["anonymous"], plain["established"]) == (None, None)  # no file opened
    assert (detail["anonymous"], detail["established"]) == (2, 2)  # live ones only
    assert plain["total_bytes"] == st.f_blocks * st.f_frsize
    assert plain["reserve_bytes"] == int(plain["total_bytes"] * 0.1)
    assert 0 < plain["free_bytes"] <= plain["total_bytes"]
    assert "live sessions: 2 anonymous, 2 established" in low.stdout
    assert "below the reserve: new anonymous sessions are not stored" in low.stdout
    refused = run("stats", "--reserve-fraction", "1.5", str(populated))
    assert refused.returncode == 2 and "--reserve-fraction must be" in refused.stderr


def test_stands_down_while_another_sweep_runs(populated: Path) -> None:
    fd = os.open(populated, os.O_RDONLY | os.O_DIRECTORY)  # the lock is the directory's
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = run("sweep", str(populated))
    finally:
        os.close(fd)
    assert result.returncode == 0
    assert "another sweep" in result.stdout
    assert len(session_files(populated)) == 5


def test_progress_on_a_terminal(populated: Path) -> None:
    for i in range(5000):  # enough entries for a progress report
        (populated / f"other-{i}").write_bytes(b"")
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run(
            [CONSOLE_SCRIPT, "sweep", str(populated)],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            timeout=120,
        )
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal has no writer left
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
    assert proc.returncode == 0
    assert b"scanned 4096 entries" in shown
    assert SUMMARY.match(proc.stdout) is not None


def test_a_directory_holding_none_of_our_files_fails_loudly(session_dir: Path) -> None:
    """A sweep pointed at the wrong directory removes nothing, says so on stderr and exits
    1, so cron mails it and systemd marks the unit failed; an empty directory is fine."""
    session_dir.mkdir()
    empty = run("sweep", "--quiet", str(session_dir))
    (session_dir / "report.pdf").write_bytes(b"%PDF")
    (session_dir / "lost+found").mkdir()

    wrong = run("sweep", "--quiet", str(session_dir))

    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "")
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert "no session files" in wrong.stderr and "1 foreign" in wrong.stderr
    assert (session_dir / "report.pdf").read_bytes() == b"%PDF"


def test_quiet_prints_nothing_when_all_is_well(populated: Path) -> None:
    result = run("sweep", "--quiet", str(populated))

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert len(session_files(populated)) == 2


def test_the_shipped_cron_line_and_units_let_a_failure_show() -> None:
    """No redirection that hides what a failing sweep says: cron mails output, so the
    line is quiet instead; the systemd service's exit status is the sweep's."""
    scripts = Path(__file__).parents[2] / "scripts"
    cron = [
        line
        for line in (scripts / "sqlite-session-sweep.cron").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    service = (scripts / "sqlite-session-sweep.service").read_text()
    (exec_start,) = [line for line in service.splitlines() if line.startswith("ExecStart=")]

    assert len(cron) == 1 and " sweep --quiet " in cron[0]
    for command in (cron[0], exec_start):
        assert "/dev/null" not in command and "|" not in command and "||" not in command
    assert not exec_start.startswith("ExecStart=-")  # ("-" ignores the exit status)
