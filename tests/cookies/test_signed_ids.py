"""Signed, strict session ids, and the signer's memory of the values that verified.

Hostile cookies are aimed at decoy session files inside the test's own tmp dir: real,
readable session files whose data would show up in the response if the cookie were ever
used to build a path. Each must be treated as no cookie, at no filesystem cost.

IdSigner remembers cookie values that verified (same answers, bounded, per key set). The
cache only saves the HMAC on a client's repeat requests; these tests pin that it never
changes what is accepted. What it remembers is seen from outside by counting the HMACs
computed (calls to :func:`hmac.new`): a remembered value costs none.
"""

from __future__ import annotations

import base64
import hmac
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from core_helpers import (
    cookie_value,
    session_files,
    session_path,
    set_stored_expiry,
    sid_of,
    spy_io,
)
from flask import Flask, request, session
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from sqlite_session import SqliteSessionInterface
from sqlite_session.ids import VERIFIED_CACHE_SIZE, IdSigner, new_session_id

SECRET = "test secret"


def routes(app: Flask) -> FlaskClient:
    @app.get("/read")
    def read() -> str:
        return f"{session.get('secret')} raw={request.cookies.get('session', '')!r}"

    @app.get("/write")
    def write() -> str:
        session["secret"] = "mine"
        return ""

    return app.test_client()


@pytest.fixture
def decoy(tmp_path: Path) -> tuple[Path, str]:
    """A real session file holding 'decoy-data', in a directory next to the sessions."""
    decoy_dir = tmp_path / "decoy"
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True)
    app.session_interface = SqliteSessionInterface(decoy_dir)

    @app.get("/plant")
    def plant() -> str:
        session["secret"] = "decoy-data"
        return ""

    client = app.test_client()
    client.get("/plant")
    return decoy_dir, sid_of(client)


def hostile_cookies(decoy_dir: Path, decoy_sid: str) -> dict[str, str]:
    signer = IdSigner([SECRET])
    relative = f"../{decoy_dir.name}/{decoy_sid}"
    absolute = str(decoy_dir / decoy_sid)
    valid_shape = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    return {
        "bad signature": f"{decoy_sid}.{'A' * 43}",
        "signature of another key": IdSigner(["other key"]).sign(decoy_sid),
        "no signature": decoy_sid,
        "bad shape": "not-a-session",
        "relative path": f"{relative}.{'A' * 43}",
        # correctly signed with the app's key, yet still never a path
        "signed relative path": signer.sign(relative),
        "signed absolute path": signer.sign(absolute),
        "signed dot-dot": signer.sign(".." + valid_shape[2:]),
        "NUL": signer.sign(valid_shape[:20] + "\x00" + valid_shape[21:]),
        "huge": signer.sign("A" * 100_000),
        "non-ascii": f"{valid_shape[:42]}é.{'A' * 43}",
        "empty": "",
    }


CASES = [
    "bad signature",
    "signature of another key",
    "no signature",
    "bad shape",
    "relative path",
    "signed relative path",
    "signed absolute path",
    "signed dot-dot",
    "NUL",
    "huge",
    "non-ascii",
    "empty",
]


@pytest.mark.parametrize("case", CASES)
def test_hostile_cookie_is_no_cookie_and_costs_no_filesystem_access(
    make_app: Callable[..., Flask],
    session_dir: Path,
    tmp_path: Path,
    decoy: tuple[Path, str],
    case: str,
) -> None:
    decoy_dir, decoy_sid = decoy
    decoy_file = session_path(decoy_dir, decoy_sid)
    decoy_bytes = decoy_file.read_bytes()
    value = hostile_cookies(decoy_dir, decoy_sid)[case]
    app = make_app()
    routes(app)
    # a raw header and no cookie jar: the value reaches the app exactly as sent
    client = app.test_client(use_cookies=False)
    headers = {"Cookie": f"session={value}"}
    with spy_io(tmp_path) as log:
        response = client.get("/read", headers=headers)
    assert response.status_code == 200
    assert response.text == f"None raw={value!r}"  # it did reach the app verbatim
    assert log.events == []
    assert "Set-Cookie" not in response.headers

    written = client.get("/write", headers=headers)
    new_value = cookie_attr_value(written)
    new_sid = new_value.rpartition(".")[0]
    assert new_sid and new_sid not in value
    assert session_files(session_dir) == [f"{new_sid}.session"]
    assert decoy_file.read_bytes() == decoy_bytes
    assert sorted(os.listdir(decoy_dir)) == [decoy_file.name]


def cookie_attr_value(response: TestResponse) -> str:
    """The value of the response's Set-Cookie header."""
    return str(response.headers["Set-Cookie"].split(";", 1)[0].partition("=")[2])


def test_ids_carry_256_random_bits(app: Flask) -> None:
    sids = set()
    routes(app)
    for _ in range(20):
        client = app.test_client()
        client.get("/write")
        sid = sid_of(client)
        assert len(base64.urlsafe_b64decode(sid + "=")) >= 32
        sids.add(sid)
    assert len(sids) == 20


def test_node_tag_prefixes_new_ids(make_app: Callable[..., Flask], session_dir: Path) -> None:
    client = routes(make_app(node="web1"))
    client.get("/write")
    node, _, token = sid_of(client).partition(".")
    assert node == "web1" and len(base64.urlsafe_b64decode(token + "=")) == 32
    assert client.get("/read").text.startswith("mine")


def test_secret_key_fallbacks_accepted_on_read_new_cookies_use_secret_key(
    make_app: Callable[..., Flask],
) -> None:
    old_app = make_app()
    old_app.config["SECRET_KEY"] = "old key"
    old = routes(old_app)
    old.get("/write")
    old_cookie = cookie_value(old)
    assert old_cookie

    rotated_app = make_app()
    rotated_app.config.update(SECRET_KEY="new key", SECRET_KEY_FALLBACKS=["old key"])
    rotated = routes(rotated_app)
    rotated.set_cookie("session", old_cookie)
    assert rotated.get("/read").text.startswith("mine")
    rotated.get("/write")  # the cookie is set again: now signed with SECRET_KEY
    new_cookie = cookie_value(rotated)
    assert new_cookie and new_cookie != old_cookie
    assert new_cookie.rpartition(".")[0] == old_cookie.rpartition(".")[0]

    new_only_app = make_app()
    new_only_app.config["SECRET_KEY"] = "new key"
    new_only = routes(new_only_app)
    new_only.set_cookie("session", new_cookie)
    assert new_only.get("/read").text.startswith("mine")
    new_only.set_cookie("session", old_cookie)  # the old key is no longer accepted
    assert new_only.get("/read").text.startswith("None")


@pytest.mark.parametrize("how", ["file removed", "file expired"])
def test_a_signed_id_without_storage_starts_a_new_session_with_a_new_id(
    app: Flask, session_dir: Path, how: str
) -> None:
    client = routes(app)
    client.get("/write")
    old_sid = sid_of(client)
    if how == "file removed":
        session_path(session_dir, old_sid).unlink()
    else:
        set_stored_expiry(session_dir, old_sid, 1.0)
    response = client.get("/read")
    assert response.text.startswith("None")
    assert "Max-Age=0" in response.headers["Set-Cookie"]  # the stale cookie is deleted
    client.set_cookie("session", IdSigner([SECRET]).sign(old_sid))
    client.get("/write")
    new_sid = sid_of(client)
    assert new_sid != old_sid
    assert not session_path(session_dir, old_sid).exists() or how == "file expired"


def test_a_client_chosen_id_is_never_adopted(app: Flask, session_dir: Path) -> None:
    chosen = base64.urlsafe_b64encode(b"\x01" * 32).rstrip(b"=").decode()
    client = routes(app)
    client.set_cookie("session", f"{chosen}.{'A' * 43}")  # unsigned: forged
    client.get("/write")
    assert sid_of(client) != chosen
    client.set_cookie("session", IdSigner([SECRET]).sign(chosen))  # signed but never issued
    client.get("/write")
    assert sid_of(client) != chosen
    assert not session_path(session_dir, chosen).exists()


class HmacCount:
    """How many HMACs were computed since the fixture started."""

    def __init__(self) -> None:
        self.calls = 0

    def since(self, action: Callable[[], object]) -> int:
        """The HMACs ``action`` computed."""
        before = self.calls
        action()
        return self.calls - before


@pytest.fixture
def hmacs(monkeypatch: pytest.MonkeyPatch) -> Iterator[HmacCount]:
    count = HmacCount()
    real_new = hmac.new

    def counting_new(*args: Any, **kwargs: Any) -> hmac.HMAC:
        count.calls += 1
        return real_new(*args, **kwargs)

    monkeypatch.setattr(hmac, "new", counting_new)
    yield count


def test_a_verified_value_keeps_verifying_to_the_same_id() -> None:
    signer = IdSigner(["k"])
    sid = new_session_id()
    value = signer.sign(sid)
    assert [signer.unsign(value) for _ in range(3)] == [sid, sid, sid]


def test_tampered_values_are_rejected_after_the_genuine_one_was_cached() -> None:
    signer = IdSigner(["k"])
    sid = new_session_id()
    value = signer.sign(sid)
    assert signer.unsign(value) == sid
    other = new_session_id()
    forged = [
        value[:-1] + ("A" if value[-1] != "A" else "B"),  # last signature character
        f"{other}.{value.rpartition('.')[2]}",  # another id under this signature
        value + "A",
        value[:-1],
        " " + value,
    ]
    for bad in forged:
        assert signer.unsign(bad) is None, bad
        assert signer.unsign(bad) is None, bad  # and again: a failure is never remembered


def test_a_value_signed_with_another_key_is_rejected_even_after_rotation() -> None:
    old_and_new = IdSigner(["old", "new"])
    new_only = IdSigner(["new"])
    sid = new_session_id()
    old_cookie = IdSigner(["old"]).sign(sid)
    assert old_and_new.unsign(old_cookie) == sid  # remembered by that signer only
    assert new_only.unsign(old_cookie) is None


def test_the_cache_is_bounded_and_evicted_values_still_verify(hmacs: HmacCount) -> None:
    signer = IdSigner(["k"])
    values = {signer.sign(sid): sid for sid in (new_session_id() for _ in range(50))}
    first = next(iter(values))
    for value in values:
        signer.unsign(value)
    recent = [signer.sign(new_session_id()) for _ in range(VERIFIED_CACHE_SIZE)]
    for value in recent:  # push the first ones out
        signer.unsign(value)
    assert hmacs.since(lambda: [signer.unsign(value) for value in recent]) == 0  # all kept
    assert hmacs.since(lambda: signer.unsign(first)) == 1  # evicted: verified afresh
    assert all(signer.unsign(value) == sid for value, sid in values.items())


def test_concurrent_verification_gives_every_thread_its_own_id(hmacs: HmacCount) -> None:
    signer = IdSigner(["k"])
    pairs = [(signer.sign(sid), sid) for sid in (new_session_id() for _ in range(3000))]

    def check(pair: tuple[str, str]) -> bool:
        value, sid = pair
        return signer.unsign(value) == sid and signer.unsign(value + "x") is None

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(check, pairs * 2))
    # still bounded: once each, at most the cache's size of the 3000 are remembered
    recomputed = hmacs.since(lambda: [signer.unsign(value) for value, _ in pairs])
    assert recomputed >= len(pairs) - VERIFIED_CACHE_SIZE


def test_rotating_secret_key_in_the_app_drops_the_old_key(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()

    @app.get("/write")
    def write() -> str:
        session["x"] = 1
        return "ok"

    @app.get("/read")
    def read() -> str:
        return repr(session.get("x"))

    client = app.test_client()
    client.get("/write")
    assert client.get("/read").text == "1"  # the cookie is now remembered as verified
    app.config["SECRET_KEY"] = "a new key"  # rotated without keeping the old one
    assert client.get("/read").text == "None"


def test_signing_is_remembered_but_stays_per_key_set(hmacs: HmacCount) -> None:
    sid = new_session_id()
    first, again = IdSigner(["k"]), IdSigner(["k"])
    assert first.sign(sid) == first.sign(sid) == again.sign(sid)
    rotated = IdSigner(["k", "newer"])
    assert rotated.sign(sid) != first.sign(sid)  # signed with the newest key
    assert rotated.unsign(rotated.sign(sid)) == sid
    assert IdSigner(["k"]).unsign(rotated.sign(sid)) is None
    others = [new_session_id() for _ in range(VERIFIED_CACHE_SIZE + 10)]
    for other in others:
        first.sign(other)
    assert hmacs.since(lambda: [first.sign(o) for o in others[-VERIFIED_CACHE_SIZE:]]) == 0
    assert hmacs.since(lambda: first.sign(sid)) == 1  # bounded: the oldest went
    assert first.sign(sid) == again.sign(sid)
