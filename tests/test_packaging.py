"""``python -m build`` makes a wheel and an sdist that install and work in a fresh venv.

Slow-ish (two virtualenvs, an isolated build that fetches setuptools from the package
index); it runs once per suite. The installed copy is imported from a neutral working
directory so the source tree cannot stand in for it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

# tomllib is 3.11+; the project supports 3.10, and [project] holds the only version line.
VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]

# Runs inside the fresh venv: version metadata, typing marker, and one real request.
CHECK = """
import importlib.metadata, importlib.resources, sys, tempfile
import flask, sqlite_session
assert sqlite_session.__file__.startswith(sys.prefix), sqlite_session.__file__
assert importlib.metadata.version("sqlite-session") == sqlite_session.__version__
assert importlib.resources.files("sqlite_session").joinpath("py.typed").is_file()
app = flask.Flask("check")
app.config.update(SECRET_KEY="k", SQLITE_SESSION_PATH=tempfile.mkdtemp() + "/s")
sqlite_session.SqliteSession(app)
@app.get("/")
def index():
    flask.session["n"] = flask.session.get("n", 0) + 1
    return str(flask.session["n"])
client = app.test_client()
print([client.get("/").text for _ in range(3)])
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return out


def the_one(directory: Path, pattern: str) -> Path:
    (found,) = directory.glob(pattern)
    return found


def install_and_check(tmp_path: Path, artifact: Path) -> str:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", artifact],
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        [python, "-c", CHECK], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    return result.stdout.strip()


def test_wheel_contents(dist: Path) -> None:
    wheel = the_one(dist, "*.whl")
    assert f"-{VERSION}-" in wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "sqlite_session/py.typed" in names
    assert "sqlite_session/ext.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert not any(n.startswith(("tests/", "scripts/")) for n in names)


def test_sdist_contents(dist: Path) -> None:
    sdist = the_one(dist, "*.tar.gz")
    top = f"sqlite_session-{VERSION}/"
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    for name in ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "tests/conftest.py"):
        assert top + name in names
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{VERSION}]" in changelog  # every released version is described


@pytest.mark.parametrize("pattern", ["*.whl", "*.tar.gz"])
def test_installs_and_works_in_a_fresh_virtualenv(
    dist: Path, tmp_path: Path, pattern: str
) -> None:
    assert install_and_check(tmp_path, the_one(dist, pattern)) == "['1', '2', '3']"
