"""``python -m build`` makes a wheel and an sdist that install and work in a fresh venv.

The distribution is Flask-SQLite-Session (the name ``sqlite-session`` belongs to an
unrelated project on the package index); the import name stays ``sqlite_session`` and
the command ``sqlite-session``. Only flask and apsw are published as requirements: the
tools for testing, docs, the demo and benchmarks are dependency groups of
pyproject.toml, never extras.

Slow-ish (two virtualenvs, an isolated build that fetches setuptools from the package
index); it runs once per suite. The installed copy is imported from a neutral working
directory so the source tree cannot stand in for it.
"""

from __future__ import annotations

import email.parser
import json
import subprocess
import sys
import tarfile
import venv
import zipfile
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from core_helpers import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # `build` brings tomli to Python 3.10
    import tomli as tomllib

DIST_NAME = "Flask-SQLite-Session"
FILE_STEM = "flask_sqlite_session"  # the name as wheel and sdist file names spell it
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION: str = PYPROJECT["project"]["version"]
PYTHONS = ("3.10", "3.11", "3.12", "3.13")

# Runs inside the fresh venv: version metadata, typing marker, and real requests whose
# session lands in the directory given as argv[1].
CHECK = f"""
import importlib.metadata, importlib.resources, sys
import flask, sqlite_session
assert sqlite_session.__file__.startswith(sys.prefix), sqlite_session.__file__
assert importlib.metadata.version("{DIST_NAME}") == sqlite_session.__version__
assert importlib.resources.files("sqlite_session").joinpath("py.typed").is_file()
app = flask.Flask("check")
app.config.update(SECRET_KEY="k", SQLITE_SESSION_PATH=sys.argv[1])
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


def wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


def entry_points(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt"))
        return archive.read(name).decode()


def run(argv: list[str | Path], cwd: Path) -> str:
    result = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=cwd)
    return result.stdout.strip()


def install_and_check(tmp_path: Path, artifact: Path) -> None:
    """Install ``artifact`` in a fresh venv; serve three requests, then run the command."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    run([bin_dir / "python", "-m", "pip", "install", "--quiet", artifact], tmp_path)
    sessions = tmp_path / "sessions"
    assert run([bin_dir / "python", "-c", CHECK, sessions], tmp_path) == "['1', '2', '3']"

    command = bin_dir / "sqlite-session"  # the console script, installed from the artifact
    assert run([command, "--version"], tmp_path) == f"sqlite-session {VERSION}"
    stats = json.loads(run([command, "stats", "--json", sessions], tmp_path))
    assert stats["sessions"] == 1


def test_wheel_contents(dist: Path) -> None:
    wheel = the_one(dist, "*.whl")
    assert wheel.name.startswith(f"{FILE_STEM}-{VERSION}-")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "sqlite_session/py.typed" in names
    assert "sqlite_session/ext.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert not any(n.startswith(("tests/", "scripts/")) for n in names)


def test_wheel_metadata_publishes_only_the_runtime_requirements(dist: Path) -> None:
    metadata = wheel_metadata(the_one(dist, "*.whl"))
    assert metadata["Name"] == DIST_NAME
    assert metadata["Version"] == VERSION
    assert metadata["License-Expression"] == "BSD-3-Clause"
    assert metadata["Requires-Python"] == ">=3.10"
    requirements = metadata.get_all("Requires-Dist") or []
    assert sorted(r.split(">=")[0] for r in requirements) == ["apsw", "flask"]
    assert metadata.get_all("Provides-Extra") is None  # no test, dev or bench tools leak
    classifiers = metadata.get_all("Classifier") or []
    for version in PYTHONS:
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert "Framework :: Flask" in classifiers
    assert "sqlite-session = sqlite_session.cli:main" in entry_points(the_one(dist, "*.whl"))


def test_tools_are_dependency_groups_not_extras() -> None:
    assert "optional-dependencies" not in PYPROJECT["project"]
    groups = PYPROJECT["dependency-groups"]
    assert set(groups) == {"test", "dev", "docs", "demo", "bench"}
    assert {"include-group": "test"} in groups["dev"]
    assert any(r.startswith("pytest") for r in groups["test"])
    assert any(r.startswith("sphinx") for r in groups["docs"])
    assert any(r.startswith("gunicorn") for r in groups["demo"])
    assert any(r.startswith("flask-session") for r in groups["bench"])
    # The license field as an SPDX expression needs setuptools 77 or later.
    assert PYPROJECT["build-system"]["requires"] == ["setuptools>=77"]


def test_sdist_contents(dist: Path) -> None:
    sdist = the_one(dist, "*.tar.gz")
    top = f"{FILE_STEM}-{VERSION}/"
    assert sdist.name == f"{FILE_STEM}-{VERSION}.tar.gz"
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    for name in ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "tests/conftest.py"):
        assert top + name in names
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{VERSION}]" in changelog  # every released version is described


@pytest.mark.parametrize("pattern", ["*.whl", "*.tar.gz"])
def test_installs_and_works_in_a_fresh_virtualenv(dist: Path, tmp_path: Path, pattern: str) -> None:
    install_and_check(tmp_path, the_one(dist, pattern))
