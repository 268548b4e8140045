"""The deployment recipes under deploy/, run or checked as far as this machine allows.

The gunicorn command line is exercised by test_nginx.py and test_browser.py (through
servers.gunicorn). uWSGI is in the ``dev`` dependency group, not ``test`` (it compiles C):
its test runs where a ``uwsgi`` binary built for this Python is next to it (CI installs
the ``dev`` group), on PATH or named by $UWSGI, and skips with that reason elsewhere. The
systemd unit is checked with ``systemd-analyze verify``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from core_helpers import ROOT, session_files
from servers import free_port, running

UWSGI = (
    os.environ.get("UWSGI")
    or shutil.which("uwsgi", path=os.path.dirname(sys.executable))
    or shutil.which("uwsgi")
)
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
UNIT = ROOT / "deploy" / "systemd" / "sqlite-session-demo.service"


@pytest.mark.skipif(UWSGI is None, reason="no uwsgi binary (set UWSGI=/path/to/uwsgi)")
def test_uwsgi_recipe_serves_the_demo(tmp_path: Path) -> None:
    port = free_port()
    sessions = tmp_path / "sessions"
    env = {"SECRET_KEY": "uwsgi test key", "SESSION_DIR": str(sessions), "PORT": str(port)}
    argv = [str(UWSGI), "--ini", str(ROOT / "deploy" / "uwsgi.ini"), "--chdir", str(ROOT)]
    with running(argv, f"http://127.0.0.1:{port}/health", tmp_path / "uwsgi.log", env):
        client = requests.Session()
        url = f"http://127.0.0.1:{port}"
        assert "Logged in as <b>Ann</b>" in client.post(url + "/login", {"username": "Ann"}).text
        for item in ("a", "b", "c", "d", "e", "f"):
            client.post(url + "/cart", {"item": item})
        page = client.get(url + "/").text
    assert "Logged in as <b>Ann</b>" in page
    assert "<li>a</li><li>b</li><li>c</li><li>d</li><li>e</li><li>f</li>" in page
    assert len(session_files(sessions)) >= 1
    log = (tmp_path / "uwsgi.log").read_text()
    assert "spawned uWSGI worker 4" in log and "multiple interpreter" not in log


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies_cleanly(tmp_path: Path) -> None:
    """Every directive is known to this systemd and every path it names exists."""
    env_file = tmp_path / "env"
    env_file.write_text("SECRET_KEY=x\n")
    text = UNIT.read_text().replace("/opt/sqlite-session-demo", str(ROOT))
    text = text.replace("/etc/sqlite-session-demo/env", str(env_file))
    assert "RuntimeDirectory=sqlite-session-demo" in text
    assert "SESSION_DIR=/run/sqlite-session-demo" in text
    (ROOT / ".venv" / "bin" / "gunicorn").resolve(strict=True)  # the ExecStart binary
    unit = tmp_path / UNIT.name
    unit.write_text(text)
    result = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", str(unit)], capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    assert (result.returncode, output) == (0, "")
