"""Library hygiene a Flask user relies on: logging only, under one logger name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from core_helpers import ROOT

# The command-line tool writes its report to stdout on purpose.
PRINTING_ALLOWED = {"cli.py", "__main__.py"}
MODULES = sorted((ROOT / "sqlite_session").rglob("*.py"))


def calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def callee(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_library_code_logs_instead_of_printing(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    if path.name not in PRINTING_ALLOWED:
        assert [c.lineno for c in calls(tree) if callee(c) == "print"] == []
    for call in calls(tree):
        if callee(call) == "getLogger":
            arg = call.args[0] if call.args else None
            name = arg.value if isinstance(arg, ast.Constant) else None
            assert isinstance(name, str), f"{path.name}:{call.lineno}: logger name must be literal"
            assert name == "sqlite_session" or name.startswith("sqlite_session."), name
