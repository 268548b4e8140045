"""The demo app: what sessions in per-session SQLite files look like from the inside.

``./scripts/demo`` runs it under gunicorn on several worker processes (127.0.0.1, port
from ``PORT``, default 5000). The page shows the current session's file and its rows,
one per key, refreshed live; a cart whose additions from several tabs at once all
persist (``session.atomic()``); a login that gives the session a new id
(``session.regenerate()``); a logout and flash messages; a "Your sessions" page that
lists the user's sessions on every device and logs any of them out. The deployment
recipes and the tests import :func:`create_app` from here.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from datetime import datetime
from typing import Any

from flask import Flask, flash, redirect, render_template_string, request, url_for
from markupsafe import Markup
from werkzeug.wrappers import Response

from sqlite_session import SqliteSessionInterface, session

HEADER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sqlite_session demo</title>
<style>body{font-family:sans-serif;max-width:44em;margin:2em auto}
.flash{background:#ffd;border:1px solid #cc8;padding:.4em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
.num{text-align:right}code{font-size:.9em}</style></head>
<body>
<h1>sqlite_session demo</h1>
{% for message in get_flashed_messages() %}<p class="flash" id="flash">{{ message }}</p>{% endfor %}
"""

PAGE = """{% if user %}
  <p id="user">Logged in as <b>{{ user }}</b></p>
  <p><a id="sessions-link" href="{{ url_for('your_sessions') }}">Your sessions</a>:
  every browser logged in as {{ user }}, and a button to log each out.</p>
  <form method="post" action="{{ url_for('logout') }}"><button id="logout">Log out</button></form>
{% else %}
  <form method="post" action="{{ url_for('login') }}">
    <input name="username" id="username" placeholder="your name" required>
    <button id="login">Log in</button></form>
{% endif %}
<h2>Cart</h2>
<ul id="cart">{% for item in cart %}<li>{{ item }}</li>{% else %}<li>(empty)</li>{% endfor %}</ul>
<form method="post" action="{{ url_for('add_to_cart') }}">
  <input name="item" id="item" placeholder="an item" required>
  <button id="add">Add to cart</button></form>
<p>Open this page in several tabs and add items in each: every addition is kept, even
when two tabs add at the same moment and different worker processes serve them.</p>
<h2>This session on disk</h2>
<div id="file">{{ file_panel }}</div>
<script>
setInterval(async () => {  // the panel again every two seconds, from whichever worker
  const response = await fetch("{{ url_for('session_file') }}");
  if (response.ok) document.getElementById("file").innerHTML = await response.text();
}, 2000);
</script>
</body></html>"""

FILE = """<p>Served by worker process <span id="pid">{{ pid }}</span>.</p>
{% if info %}
<p>File <code id="path">{{ info.path }}</code>: <span id="size">{{ info.size }}</span> bytes
{%- if info.wal_size %}, plus {{ info.wal_size }} bytes of write-ahead log{% endif %}.</p>
<table id="rows"><tr><th>key (one row each)</th><th class="num">bytes</th></tr>
{% for key, size in info.rows %}<tr><td>{{ key }}</td><td class="num">{{ size }}</td></tr>
{% endfor %}</table>
{% else %}
<p id="nofile">No file: this session has not been saved yet (nothing in it, no cookie).</p>
{% endif %}"""

SESSIONS = """<h2>Your sessions, {{ user }}</h2>
<p>Each browser where you logged in as {{ user }}, oldest login first.</p>
<table id="sessions"><tr><th>device</th><th>network</th><th>logged in</th>
<th>last seen</th><th>expires</th><th></th></tr>
{% for s in sessions %}<tr class="session">
<td class="device">{{ s.user_agent or "unknown" }}</td>
<td class="network">{{ s.network or "unknown" }}</td>
<td>{{ s.established_at | when }}</td><td>{{ s.last_seen | when }}</td>
<td>{{ s.expires_at | when }}</td>
<td>{% if s.current %}<b class="current">this device</b>{% else %}
  <form method="post" action="{{ url_for('revoke_session', handle=s.handle) }}">
  <button class="revoke" id="revoke-{{ s.handle }}">Log out</button></form>{% endif %}</td>
</tr>{% endfor %}</table>
<form method="post" action="{{ url_for('revoke_other_sessions') }}">
  <button id="revoke-others">Log out everywhere else</button></form>
<p><a href="{{ url_for('index') }}">Back to the demo</a></p>
</body></html>"""


def default_session_dir() -> str:
    """/dev/shm when the machine has it (a tmpfs), else the system temp dir."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    return os.path.join(base, "sqlite-session-demo")


def create_app(
    session_dir: str | None = None, secret_key: str | None = None, **options: Any
) -> Flask:
    """The demo application, its sessions stored under ``session_dir``.

    ``options`` go to :class:`SqliteSessionInterface` (the deployment recipes pass
    ``node=`` to run several instances behind a load balancer).
    """
    app = Flask(__name__)
    app.secret_key = secret_key or os.environ.get("SECRET_KEY") or secrets.token_hex(32)
    # The cookie never goes along with another site's POST: enough against CSRF here.
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    # The user is kept under "user", and each login records the browser and network.
    options = {"user_key": "user", "record_client": True, **options}
    interface = SqliteSessionInterface(session_dir or default_session_dir(), **options)
    app.session_interface = interface

    @app.template_filter("when")
    def when(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")

    @app.get("/")
    def index() -> str:
        return render_template_string(
            HEADER + PAGE,
            user=session.get("user"),
            cart=session.get("cart", []),
            file_panel=Markup(session_file()),
        )

    @app.get("/session-file")
    def session_file() -> str:
        """The session's file and rows: a fragment of the page, fetched again every 2 s."""
        return render_template_string(FILE, pid=os.getpid(), info=interface.describe(session))

    @app.post("/login")
    def login() -> Response:
        name = request.form.get("username", "").strip()[:40] or "anonymous"
        session.regenerate()  # a new id at login defeats session fixation
        session["user"] = name
        flash(f"Welcome, {name}!")
        return redirect(url_for("index"))

    @app.post("/cart")
    def add_to_cart() -> Response:
        item = request.form.get("item", "").strip()[:80]
        if item:
            # Read, change and write the cart under the session's lock: two tabs adding
            # at the same moment each see the other's item, so neither is lost.
            with session.atomic():
                session["cart"] = [*session.get("cart", []), item]
            flash(f"Added {item} to your cart.")
        return redirect(url_for("index"))

    @app.post("/logout")
    def logout() -> Response:
        session.clear()
        flash("You are logged out.")
        return redirect(url_for("index"))

    @app.get("/sessions")
    def your_sessions() -> str | Response:
        user = session.get("user")
        if user is None:
            flash("Log in to see your sessions.")
            return redirect(url_for("index"))
        sessions = interface.user_sessions(user)
        return render_template_string(HEADER + SESSIONS, user=user, sessions=sessions)

    @app.post("/sessions/<handle>/revoke")
    def revoke_session(handle: str) -> Response:
        user = session.get("user")
        # Only this user's own sessions can be named: another user's handle ends nothing.
        if user is not None and interface.revoke_session(user, handle):
            flash("That session is logged out.")
        else:
            flash("No such session: it had already ended.")
        return redirect(url_for("your_sessions"))

    @app.post("/sessions/revoke-others")
    def revoke_other_sessions() -> Response:
        user = session.get("user")
        if user is not None:
            ended = interface.revoke_user_sessions(user, keep_current=True)
            flash(f"Logged out everywhere else: {ended} other session(s) ended.")
        return redirect(url_for("your_sessions"))

    @app.get("/health")
    def health() -> str:
        return "ok"  # never touches the session: no file, no cookie, no I/O

    return app
