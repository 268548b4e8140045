"""IdSigner remembers cookie values that verified: same answers, bounded, per key set.

The cache only saves the HMAC on a client's repeat requests; these tests pin that it
never changes what is accepted. What it remembers is seen from outside by counting the
HMACs computed (calls to :func:`hmac.new`): a remembered value costs none.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask, session

from sqlite_session.ids import VERIFIED_CACHE_SIZE, IdSigner, new_session_id


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
