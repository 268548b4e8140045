"""WSGI entry point of the deployment recipes: the demo app, configured from the environment.

    SECRET_KEY=... SESSION_DIR=/dev/shm/myapp-sessions \\
        gunicorn --pythonpath deploy,scripts --workers 4 --bind 127.0.0.1:8000 wsgi:app

``SECRET_KEY`` is required: every worker process, and every app server behind a load
balancer, must sign session cookies with the same key (the demo's random fallback would
differ in each worker, and every other request would start a fresh session).
``SESSION_DIR`` is the session directory (default: the demo's directory on /dev/shm).
``SESSION_NODE``, when set, tags new session ids (``web1.<token>``) so a load balancer can
route each session back to this server (see deploy/nginx-sticky.conf).

A real application does the same in its own factory, or with the extension:
``app.config.from_prefixed_env()`` then ``SqliteSession(app)`` reads
``FLASK_SQLITE_SESSION_PATH``, ``FLASK_SQLITE_SESSION_NODE``, ...
"""

from __future__ import annotations

import os

from demo_app import create_app

if not os.environ.get("SECRET_KEY"):
    raise RuntimeError("set SECRET_KEY: all workers and servers must share one signing key")

app = create_app(
    os.environ.get("SESSION_DIR") or None,
    os.environ["SECRET_KEY"],
    node=os.environ.get("SESSION_NODE") or None,
)
