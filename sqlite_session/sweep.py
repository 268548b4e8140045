"""The janitor's public names under the path they were first published at.

Kept so that ``from sqlite_session.sweep import sweep`` keeps working; the code lives in
:mod:`sqlite_session.janitor`.
"""

from .janitor import *  # noqa: F403 (the same names, by definition)
from .janitor import __all__ as __all__
