"""``python -m sqlite_session``: the same command line as ``sqlite-session``."""

import sys

from .cli import main

sys.exit(main())
