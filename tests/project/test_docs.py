"""The README's examples and the documentation stay in step with the package.

Every ```python block of the README is a complete program that passes ``mypy --strict``
(a user copies them into a strictly typed app); the docs include the README's
configuration table rather than a copy of it; the API reference names every public name.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from core_helpers import ROOT

import sqlite_session

README = ROOT / "README.md"
DOCS = ROOT / "docs"


def python_blocks(text: str) -> list[str]:
    """The bodies of the fenced blocks whose info string is exactly ``python``."""
    return re.findall(r"^```python\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def test_readme_examples_pass_mypy_strict(tmp_path: Path) -> None:
    blocks = python_blocks(README.read_text())
    assert blocks, "the README has no ```python example"
    files = []
    for number, block in enumerate(blocks):
        path = tmp_path / f"readme_example_{number}.py"
        path.write_text(block)
        files.append(str(path))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *files],
        cwd=ROOT,  # where ``import sqlite_session`` finds this checkout
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, "README examples fail mypy --strict:\n" + result.stdout


def test_readme_minimal_app_uses_the_typed_session() -> None:
    app = next(b for b in python_blocks(README.read_text()) if "@app." in b)
    assert "from sqlite_session import SqliteSessionInterface, session" in app
    assert "session.regenerate()" in app


def test_docs_include_the_readme_configuration_table() -> None:
    readme = README.read_text()
    for marker in ("<!-- config-table-start -->", "<!-- config-table-end -->"):
        assert readme.count(marker) == 1, marker
        assert marker in (DOCS / "configuration.md").read_text(), marker


def test_api_reference_documents_every_public_name() -> None:
    api = (DOCS / "api.md").read_text()
    documented = set(re.findall(r"^\.\. auto\w+:: sqlite_session\.(\w+)$", api, re.MULTILINE))
    documented |= set(re.findall(r"^\.\. data:: sqlite_session\.(\w+)$", api, re.MULTILINE))
    assert documented == set(sqlite_session.__all__)


def test_every_test_path_the_docs_name_exists() -> None:
    texts = [
        README,
        *DOCS.glob("*.md"),
        *(ROOT / "scripts").iterdir(),
        *(ROOT / "deploy").rglob("*"),
    ]
    named = {
        path
        for text in texts
        if text.is_file()
        for path in re.findall(r"\btests/[\w/]+\.py\b", text.read_text(errors="replace"))
    }
    assert named, "the guarantees name their tests"
    assert sorted(p for p in named if not (ROOT / p).is_file()) == []
