"""Sphinx configuration: ``sphinx-build -W -b html docs docs/_build/html``."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlite_session import __version__  # noqa: E402

project = "sqlite_session"
author = "sqlite_session developers"
copyright = "sqlite_session developers"
release = __version__
version = __version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
# bench.md is written by ./scripts/bench and included by performance.md.
exclude_patterns = ["_build", "bench.md"]

myst_heading_anchors = 3  # "page.md#a-heading" links work here as they do on GitHub

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True}

html_theme = "alabaster"
html_title = f"sqlite_session {release}"
