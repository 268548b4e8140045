"""Scale-out: two app servers behind Debian's nginx routing on the session id's node tag.

The nginx configuration is the shipped deploy/nginx-sticky.conf with its example ports
replaced; the test wraps it in a minimal main config under its own tmp dir, starts nginx
with ``-p``/``-c`` on a free port of 127.0.0.1 and stops it by PID. The app servers are the
gunicorn recipe (deploy/wsgi.py), each with its own session directory and node name.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from core_helpers import ROOT
from servers import free_port, gunicorn, running

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CLIENTS = 200
ITEMS = 4  # add-to-cart requests per client, each followed by the redirected page
PARALLEL = 16

pytestmark = pytest.mark.skipif(
    not Path(NGINX).exists(), reason="nginx is not installed (apt-get install -y nginx)"
)

MAIN_CONF = """
daemon off;
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    # For the test only: which server answered (the last address after any retries).
    add_header X-Upstream $upstream_addr always;
    include {tmp}/sticky.conf;
}}
"""


@dataclass
class Cluster:
    url: str
    ports: dict[str, int]  # node name -> app server port
    apps: dict[str, ExitStack] = field(default_factory=dict)

    def stop(self, node: str) -> None:
        self.apps.pop(node).close()


def sticky_conf(listen: int, ports: dict[str, int]) -> str:
    """deploy/nginx-sticky.conf with its example ports replaced by the test's ports."""
    text = (ROOT / "deploy" / "nginx-sticky.conf").read_text()
    for old, new in (("8001", ports["web1"]), ("8002", ports["web2"]), ("8080", listen)):
        assert f"127.0.0.1:{old}" in text
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    return text


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    ports = {"web1": free_port(), "web2": free_port()}
    listen = free_port()
    conf_dir = tmp_path / "nginx"
    conf_dir.mkdir()
    (conf_dir / "sticky.conf").write_text(sticky_conf(listen, ports))
    # As root, nginx's workers would drop to www-data, who cannot enter pytest's 0700 tmp.
    user = "user root;" if os.geteuid() == 0 else ""
    (conf_dir / "nginx.conf").write_text(MAIN_CONF.format(tmp=conf_dir, user=user))
    nginx = [NGINX, "-e", str(conf_dir / "error.log"), "-p", str(conf_dir), "-c"]
    test = subprocess.run([*nginx, str(conf_dir / "nginx.conf"), "-t"], capture_output=True)
    assert test.returncode == 0, test.stderr.decode()
    result = Cluster(url=f"http://127.0.0.1:{listen}", ports=ports)
    with ExitStack() as stack:
        for node, port in ports.items():
            env = {
                "SECRET_KEY": "one key shared by every server",
                "SESSION_DIR": str(tmp_path / node),
                "SESSION_NODE": node,
            }
            app_stack = stack.enter_context(ExitStack())
            app_stack.enter_context(gunicorn(tmp_path, port, env))
            result.apps[node] = app_stack
        stack.enter_context(
            running(
                [*nginx, str(conf_dir / "nginx.conf")],
                f"{result.url}/health",
                conf_dir / "nginx.out",
                {},
            )
        )
        yield result


@dataclass(eq=False)  # hashable by identity: a dict key per client
class Client:
    name: str
    http: requests.Session = field(default_factory=requests.Session)
    node: str = ""  # the node tag of the client's session cookie
    cart: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def served_by(cluster: Cluster, response: requests.Response) -> str:
    """The node whose port answered (after any nginx retry)."""
    port = int(response.headers["X-Upstream"].split(",")[-1].rsplit(":", 1)[1])
    return next(node for node, p in cluster.ports.items() if p == port)


def page(cluster: Cluster, client: Client, method: str, path: str, **form: str) -> str:
    """One request (plus the redirect it causes), recording every deviation."""
    response = client.http.request(method, cluster.url + path, data=form or None, timeout=30)
    if response.status_code != 200:
        client.errors.append(f"{method} {path}: HTTP {response.status_code}")
    cookie = client.http.cookies.get("session", "")
    client.node = cookie.split(".")[0] if cookie.count(".") == 2 else ""
    server = served_by(cluster, response)
    if client.node and server != client.node:
        client.errors.append(f"{path}: {client.node} session served by {server}")
    return response.text


def shown_user(html: str) -> str | None:
    found = re.search(r'<p id="user">Logged in as <b>([^<]*)</b>', html)
    return found[1] if found else None


def shown_cart(html: str) -> list[str]:
    items = re.findall(r"<li>([^<]*)</li>", html)
    return [] if items == ["(empty)"] else items


def log_in_and_shop(cluster: Cluster, client: Client) -> None:
    html = page(cluster, client, "POST", "/login", username=client.name)
    if shown_user(html) != client.name:
        client.errors.append(f"login not shown: {shown_user(html)!r}")
    for n in range(ITEMS):
        client.cart.append(f"{client.name}-item{n}")
        html = page(cluster, client, "POST", "/cart", item=client.cart[-1])
        if shown_user(html) != client.name or shown_cart(html) != client.cart:
            client.errors.append(f"lost: user {shown_user(html)!r} cart {shown_cart(html)}")


def look(cluster: Cluster, client: Client) -> str:
    return page(cluster, client, "GET", "/")


def test_sessions_stick_to_their_node_and_survive_only_with_it(cluster: Cluster) -> None:
    clients = [Client(f"user{i}") for i in range(CLIENTS)]
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(lambda c: log_in_and_shop(cluster, c), clients))
    assert [c.errors for c in clients if c.errors] == []
    by_node = {node: [c for c in clients if c.node == node] for node in cluster.ports}
    assert sum(len(group) for group in by_node.values()) == CLIENTS
    assert all(by_node.values()), "new sessions must land on both nodes"

    cluster.stop("web1")
    with ThreadPoolExecutor(PARALLEL) as pool:
        pages = dict(zip(clients, pool.map(lambda c: look(cluster, c), clients), strict=True))
    assert [c.errors for c in clients if c.errors] == []  # no 5xx, web2 kept its routing
    for client in by_node["web2"]:
        assert (shown_user(pages[client]), shown_cart(pages[client])) == (client.name, client.cart)
    for client in by_node["web1"]:
        assert (shown_user(pages[client]), shown_cart(pages[client])) == (None, [])

    # The orphans log in again: their new session is web2's and sticks there.
    orphans = by_node["web1"]
    for client in orphans:
        client.cart.clear()
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(lambda c: log_in_and_shop(cluster, c), orphans))
    assert [c.errors for c in orphans if c.errors] == []
    assert {c.node for c in orphans} == {"web2"}
