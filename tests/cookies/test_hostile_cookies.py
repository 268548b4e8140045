"""Hostile input: arbitrary Cookie headers, and guessing session ids.

The property test throws random and crafted Cookie headers at a view that reads and
writes the session. Always: a 200, a fresh empty session (never the victim's data),
no file outside the session directory (a decoy tree sits next to it), no file named
after an id the client sent, and the victim's session file untouched.

The id tests check the id size, the constant-time signature comparison, and that a
forged cookie for an existing id is indistinguishable from one for a made-up id: same
response, no cookie, and no filesystem access at all (watched with inotify).
"""

from __future__ import annotations

import base64
import ctypes
import errno
import hmac
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify, session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sqlite_session.ids
from sqlite_session import SqliteSessionInterface
from sqlite_session.ids import IdSigner, new_session_id

SECRET_KEY = "hostile tests secret"
SECRET = "the victim's secret"


@dataclass
class Target:
    """The app under attack, the victim's session, and the decoy tree next to it."""

    app: Flask
    root: Path
    sessions: Path
    victim_sid: str
    victim_cookie: str

    def outside(self) -> dict[str, tuple[int, bytes]]:
        """Every file under ``root`` except the session directory, with mtime and bytes."""
        found = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.sessions:
                dirnames.clear()
                continue
            for name in filenames:
                path = Path(dirpath) / name
                found[str(path)] = (path.lstat().st_mtime_ns, path.read_bytes())
        return found


def build_target(root: Path) -> Target:
    app = Flask(__name__)
    app.secret_key = SECRET_KEY
    sessions = root / "sessions"
    app.session_interface = SqliteSessionInterface(sessions)

    @app.route("/hit", methods=["GET", "POST"])
    def hit() -> Any:
        seen = dict(session)
        session["hits"] = len(seen) + 1
        return jsonify(seen)

    @app.get("/peek")
    def peek() -> Any:
        return jsonify(secret=session.get("secret"))

    @app.post("/plant")
    def plant() -> str:
        session["secret"] = SECRET
        return "ok"

    decoy = root / "decoy"
    (decoy / "deeper").mkdir(parents=True)
    (decoy / "x.session").write_bytes(b"decoy")
    (decoy / "deeper" / "passwd").write_bytes(b"root:x:0:0")
    victim = app.test_client()
    victim.post("/plant")
    cookie = victim.get_cookie("session")
    assert cookie is not None
    return Target(app, root, sessions, cookie.value.rpartition(".")[0], cookie.value)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Target:
    return build_target(tmp_path_factory.mktemp("hostile"))


def forged(sid: str) -> str:
    """A cookie value for ``sid`` with a well-formed signature under the wrong key."""
    return IdSigner(["not the app's key"]).sign(sid)


SIG = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=43, max_size=43
)
NASTY = st.sampled_from(
    [
        "../decoy/x",
        "../../decoy/deeper/passwd",
        "/etc/passwd",
        "..%2Fdecoy%2Fx",
        "a\0b",
        "x" * 43 + "\0",
        "decoy/x",
        ".",
        "",
        "\u202e\u0000\udcff".encode("utf-8", "surrogatepass").decode("latin-1"),
    ]
)
VALUE = st.one_of(
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass").decode("latin-1")),
    st.builds(lambda n, s: f"{n}.{s}", NASTY, SIG),
    st.builds(lambda s: f"{new_session_id()}.{s}", SIG),
    st.just("").map(lambda _: forged(new_session_id())),
    st.integers(1000, 200_000).map(lambda n: "A" * n),
)


@st.composite
def cookie_headers(draw: st.DrawFn, victim_sid: str) -> str:
    """A Cookie header: several cookies, often many named ``session``."""
    values = draw(st.lists(st.one_of(VALUE, st.just(forged(victim_sid))), min_size=1, max_size=6))
    names = draw(
        st.lists(
            st.sampled_from(["session", "session ", "SESSION", "x"]),
            min_size=len(values),
            max_size=len(values),
        )
    )
    separator = draw(st.sampled_from(["; ", ";", ", ", "\t;"]))
    header = separator.join(f"{name}={value}" for name, value in zip(names, values, strict=True))
    return header.replace("\r", "").replace("\n", "")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_arbitrary_cookie_headers(target: Target, data: st.DataObject) -> None:
    header = data.draw(cookie_headers(target.victim_sid))
    outside = target.outside()
    victim_file = target.sessions / f"{target.victim_sid}.session"
    victim_before = (victim_file.stat().st_mtime_ns, victim_file.read_bytes())
    files_before = set(os.listdir(target.sessions))

    client = target.app.test_client(use_cookies=False)
    response = client.post("/hit", headers={"Cookie": header})

    assert response.status_code == 200
    assert response.json == {}  # a fresh session: nobody's data, the victim's least of all
    assert target.outside() == outside
    assert (victim_file.stat().st_mtime_ns, victim_file.read_bytes()) == victim_before
    created = set(os.listdir(target.sessions)) - files_before
    cookie = response.headers.get("Set-Cookie", "")
    new_value = cookie.partition("=")[2].partition(";")[0]
    new_sid = IdSigner([SECRET_KEY]).unsign(new_value)
    assert new_sid is not None, "the new session's cookie is not validly signed"
    assert new_sid not in header  # a fresh id of ours, never one the client sent
    assert created == {f"{new_sid}.session"}


def test_ids_carry_256_bits() -> None:
    ids = {new_session_id() for _ in range(2000)}
    assert len(ids) == 2000
    for sid in list(ids)[:50]:
        assert len(base64.urlsafe_b64decode(sid + "=")) * 8 >= 256


def test_signatures_are_compared_in_constant_time(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, Any]] = []
    compare = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(sqlite_session.ids.hmac, "compare_digest", spy)
    signer = IdSigner([SECRET_KEY])
    assert signer.unsign(forged(target.victim_sid)) is None
    assert calls, "the signature was not checked with hmac.compare_digest"
    assert signer.unsign(target.victim_cookie) == target.victim_sid


# -- inotify: proof that a request did no filesystem access in the session directory --

IN_ACCESS, IN_OPEN, IN_ALL_EVENTS = 0x1, 0x20, 0xFFF
_EVENT = struct.Struct("iIII")


@contextmanager
def watched(directory: Path) -> Iterator[list[int]]:
    """Collect the inotify event masks of ``directory`` and its files during the block."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EMFILE):  # anything else is a bug: fail
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        # a kernel without inotify, or the per-user instance limit reached
        pytest.skip(f"inotify is not available: {os.strerror(err)}")
    masks: list[int] = []
    try:
        if libc.inotify_add_watch(fd, str(directory).encode(), IN_ALL_EVENTS) < 0:
            err = ctypes.get_errno()
            if err != errno.ENOSPC:  # a wrong path or flag is a bug: fail
                raise OSError(err, f"inotify_add_watch {directory}: {os.strerror(err)}")
            # the per-user watch limit (fs.inotify.max_user_watches) reached
            pytest.skip(f"cannot watch the session directory: {os.strerror(err)}")
        yield masks
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            data = b""
        offset = 0
        while offset < len(data):
            _, mask, _, length = _EVENT.unpack_from(data, offset)
            masks.append(mask)
            offset += _EVENT.size + length
    finally:
        os.close(fd)


def test_forged_cookie_for_an_existing_id_looks_like_any_other(target: Target) -> None:
    client = target.app.test_client(use_cookies=False)

    def peek(cookie: str) -> tuple[Any, list[int]]:
        with watched(target.sessions) as masks:
            response = client.get("/peek", headers={"Cookie": f"session={cookie}"})
        headers = sorted((k, v) for k, v in response.headers.items() if k != "Date")
        return (response.status_code, response.data, headers), masks

    existing, existing_io = peek(forged(target.victim_sid))
    made_up, made_up_io = peek(forged(new_session_id()))
    assert existing == made_up
    assert existing[0] == 200 and b"Set-Cookie" not in str(existing[2]).encode()
    assert existing_io == [] and made_up_io == []
    genuine, genuine_io = peek(target.victim_cookie)  # the control: inotify does see reads
    assert SECRET.encode() in genuine[1]
    assert any(mask & (IN_ACCESS | IN_OPEN) for mask in genuine_io)
