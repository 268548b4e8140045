"""A session directory that cannot be used for now: replaced by a file or a symlink loop,
or no longer searchable by the app's user. Reads and writes answer
:class:`~sqlite_session.SessionStorageUnavailable`, a new session
:class:`~sqlite_session.SessionDirectoryError` (or the former) where the directory
cannot be re-created; never a raw ``OSError``, never a whole id in a log or a traceback,
and once the directory is back the user's session and cookie are as they were.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from core_helpers import ROOT, cookie_value, sid_of
from test_directory_removed import build_app
from werkzeug.test import TestResponse

NOBODY = 65534
HERE = Path(__file__).parent
TESTS = ROOT / "tests"


def replaced_by_a_file(directory: Path) -> None:
    directory.write_text("not a directory")


def replaced_by_a_symlink_loop(directory: Path) -> None:
    directory.symlink_to(directory.name)


@contextlib.contextmanager
def directory_replaced(directory: Path, replace: Callable[[Path], None]) -> Iterator[None]:
    """The session directory moved aside and something unusable put at its path."""
    aside = directory.with_name("aside")
    directory.rename(aside)
    replace(directory)
    try:
        yield
    finally:
        directory.unlink()
        aside.rename(directory)


def errors(*responses: TestResponse) -> list[str]:
    """The session errors the responses answered (raised in the view or at the save)."""
    return [response.json["error"] if response.json else response.text for response in responses]


@pytest.mark.parametrize(
    ("replace", "new_session"),
    [
        (replaced_by_a_file, "SessionDirectoryError"),  # it cannot be re-created
        (replaced_by_a_symlink_loop, "SessionStorageUnavailable"),
    ],
)
def test_a_directory_replaced_keeps_the_session_and_never_logs_its_id(
    session_dir: Path,
    replace: Callable[[Path], None],
    new_session: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = build_app(session_dir)
    client = app.test_client()
    assert client.post("/login").status_code == 200
    sid, cookie = sid_of(client), cookie_value(client)

    caplog.set_level(logging.DEBUG)
    with directory_replaced(session_dir, replace):
        read = client.get("/whoami")
        write = client.post("/login")
        new = app.test_client().post("/login")

    assert errors(read, write, new) == ["SessionStorageUnavailable"] * 2 + [new_session]
    assert "Set-Cookie" not in read.headers and "Set-Cookie" not in write.headers
    assert cookie_value(client) == cookie
    assert client.get("/whoami").text == "ada"  # the directory is back: nothing was lost
    assert sid not in caplog.text  # messages and the tracebacks Flask logs


# Run as an unprivileged user (root is never refused by permissions): every module is
# imported and a warm-up request made before the user is switched, since the venv and
# the standard library may not be readable by that user.
_AS_NOBODY = """
import json, logging, os, sys
sys.path[:0] = sys.argv[2:]
from flask import session
from core_helpers import cookie_value, sid_of
from test_directory_removed import build_app
from test_unusable_directory import errors

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
directory = sys.argv[1]
warm = build_app(directory + "/warm-up")
warm.get("/boom")(lambda: 1 / 0)
for method, url in [("POST", "/login"), ("GET", "/whoami"), ("GET", "/boom")]:
    warm.test_client().open(url, method=method)
sessions = directory + "/sessions"
os.mkdir(sessions, 0o700)
os.chown(sessions, {uid}, {uid})
os.setgid({uid})
os.setuid({uid})

app = build_app(sessions)
client = app.test_client()
client.post("/login")
sid, cookie = sid_of(client), cookie_value(client)
os.chmod(sessions, 0o600)  # the search bit lost, by mistake
answers = errors(client.get("/whoami"), client.post("/login"), app.test_client().post("/login"))
os.chmod(sessions, 0o700)
kept, after = cookie_value(client) == cookie, client.get("/whoami").text
print(json.dumps({{"sid": sid, "answers": answers, "kept": kept, "after": after}}))
"""


@pytest.fixture
def reachable_by_nobody() -> Iterator[Path]:
    """A directory an unprivileged user can reach (a test's tmp_path is root's, 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="sqlite-session-nobody-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def test_a_directory_the_app_user_may_no_longer_search(reachable_by_nobody: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can run the app as another user")
    script = _AS_NOBODY.format(uid=NOBODY)
    result = subprocess.run(
        [sys.executable, "-c", script, str(reachable_by_nobody), *map(str, (TESTS, HERE))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["answers"] == ["SessionStorageUnavailable"] * 3
    assert outcome["kept"] and outcome["after"] == "ada"
    assert outcome["sid"] not in result.stderr  # the log, tracebacks included
    assert "PermissionError" in result.stderr  # (what the log did show, without the path)
