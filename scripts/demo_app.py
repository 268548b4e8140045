"""The demo app: a login with ``regenerate()``, a cart and flash messages on sqlite_session.

Run it with ``./scripts/demo`` (port from ``PORT``, default 5000, on 127.0.0.1). The
tests and the gunicorn/nginx/browser checks import :func:`create_app` from here.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from typing import Any

from flask import Flask, flash, redirect, render_template_string, request, session, url_for
from werkzeug.wrappers import Response

from sqlite_session import SqliteSessionInterface

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sqlite_session demo</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}
.flash{background:#ffd;border:1px solid #cc8;padding:.4em}</style></head>
<body>
<h1>sqlite_session demo</h1>
{% for message in get_flashed_messages() %}<p class="flash" id="flash">{{ message }}</p>{% endfor %}
{% if user %}
  <p id="user">Logged in as <b>{{ user }}</b></p>
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
    app.session_interface = SqliteSessionInterface(session_dir or default_session_dir(), **options)

    @app.get("/")
    def index() -> str:
        return render_template_string(PAGE, user=session.get("user"), cart=session.get("cart", []))

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
            session.setdefault("cart", []).append(item)  # a nested change, no modified=True
            flash(f"Added {item} to your cart.")
        return redirect(url_for("index"))

    @app.post("/logout")
    def logout() -> Response:
        session.clear()
        flash("You are logged out.")
        return redirect(url_for("index"))

    @app.get("/health")
    def health() -> str:
        return "ok"  # never touches the session: no file, no cookie, no I/O

    return app


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "5000"))
    demo = create_app()
    print(f"sqlite_session demo on http://127.0.0.1:{port}/ (sessions in {default_session_dir()})")
    demo.run(host="127.0.0.1", port=port)
