"""IdSigner remembers cookie values that verified: same answers, bounded, per key set.

The cache only saves the HMAC on a client's repeat requests; these tests pin that it
never changes what is accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from flask import Flask, session

from sqlite_session.ids import VERIFIED_CACHE_SIZE, IdSigner, new_session_id


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


def test_the_cache_is_bounded_and_evicted_values_still_verify() -> None:
    signer = IdSigner(["k"])
    values = {signer.sign(sid): sid for sid in (new_session_id() for _ in range(50))}
    first = next(iter(values))
    for value in values:
        signer.unsign(value)
    for _ in range(VERIFIED_CACHE_SIZE):  # push the first ones out
        signer.unsign(signer.sign(new_session_id()))
    assert len(signer._verified) == VERIFIED_CACHE_SIZE
    assert first not in signer._verified
    assert all(signer.unsign(value) == sid for value, sid in values.items())


def test_concurrent_verification_gives_every_thread_its_own_id() -> None:
    signer = IdSigner(["k"])
    pairs = [(signer.sign(sid), sid) for sid in (new_session_id() for _ in range(3000))]

    def check(pair: tuple[str, str]) -> bool:
        value, sid = pair
        return signer.unsign(value) == sid and signer.unsign(value + "x") is None

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(check, pairs * 2))
    assert len(signer._verified) <= VERIFIED_CACHE_SIZE


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


def test_signing_is_remembered_but_stays_per_key_set() -> None:
    sid = new_session_id()
    first, again = IdSigner(["k"]), IdSigner(["k"])
    assert first.sign(sid) == first.sign(sid) == again.sign(sid)
    rotated = IdSigner(["k", "newer"])
    assert rotated.sign(sid) != first.sign(sid)  # signed with the newest key
    assert rotated.unsign(rotated.sign(sid)) == sid
    assert IdSigner(["k"]).unsign(rotated.sign(sid)) is None
    for _ in range(VERIFIED_CACHE_SIZE + 10):
        first.sign(new_session_id())
    assert len(first._signed) == VERIFIED_CACHE_SIZE
    assert first.sign(sid) == again.sign(sid)
