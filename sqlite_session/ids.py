"""Session ids: generation, validation and the signed cookie value.

An id is 32 bytes from :mod:`secrets` (256 bits) in URL-safe base64, optionally
prefixed by a node name (``web1.`` + token) so a load balancer can route a session
back to the machine that holds it. The id becomes a file name, so only ids that match
:data:`SESSION_ID_RE` exactly are ever used to build a path.

The cookie carries ``id.signature`` where the signature is HMAC-SHA256 of the id under
a key derived from the app's ``SECRET_KEY``. A forged or malformed cookie is rejected
before any filesystem access; comparison is constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Sequence

TOKEN_BYTES = 32
NODE_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
SESSION_ID_RE = re.compile(r"(?:[a-z0-9][a-z0-9-]{0,31}\.)?[A-Za-z0-9_-]{43}")
# An id (at most 76 characters), a dot and a 43-character signature; anything longer is
# rejected before it is parsed at all.
MAX_COOKIE_LENGTH = 76 + 1 + 43
_SALT = b"sqlite_session.cookie-id"
# How many verified cookie values (and signed ids) each IdSigner remembers (~200 B each).
VERIFIED_CACHE_SIZE = 1024


def short_id(sid: str | None) -> str:
    """Enough of a session id to tell sessions apart in a log; a whole id is a credential."""
    return "-" if sid is None else sid[:8] + "..."


def validate_node(node: str | None) -> str | None:
    """Return ``node`` if it is a usable node name, raise :class:`ValueError` otherwise."""
    if node is not None and not NODE_RE.fullmatch(node):
        raise ValueError(
            f"node name {node!r} must be 1-32 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    return node


def new_session_id(node: str | None = None) -> str:
    """A fresh random session id (256 bits), tagged with ``node`` when given."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return f"{node}.{token}" if node else token


def is_valid_session_id(sid: str) -> bool:
    """True when ``sid`` has the exact shape of an id this module generates."""
    return SESSION_ID_RE.fullmatch(sid) is not None


def _to_bytes(key: str | bytes) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else key


class IdSigner:
    """Signs ids for the cookie and verifies cookie values.

    ``keys`` is ordered oldest first, newest last (Flask's ``SECRET_KEY_FALLBACKS`` then
    ``SECRET_KEY``): new cookies are signed with the newest key, and a cookie signed with
    any of them is accepted, so a key can be rotated without logging everyone out.
    """

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise ValueError("IdSigner needs at least one secret key")
        # Derive a dedicated key so the app's SECRET_KEY is never used raw for this purpose.
        self._keys = [hmac.new(_to_bytes(k), _SALT, hashlib.sha256).digest() for k in keys]
        # Cookie values that verified recently -> their id, and ids -> their cookie value
        # (first in, first out; see unsign and sign).
        self._verified: dict[str, str] = {}
        self._signed: dict[str, str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _signature(key: bytes, sid: str) -> str:
        digest = hmac.new(key, sid.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    @property
    def rotating(self) -> bool:
        """True when fallback keys are accepted: a valid cookie may need re-signing."""
        return len(self._keys) > 1

    def sign(self, sid: str) -> str:
        """The cookie value for ``sid``.

        Remembered like verified values (signing is deterministic): a session's cookie
        is set again at every save that modifies it, which saves an HMAC per write.
        """
        value = self._signed.get(sid)
        if value is None:
            value = f"{sid}.{self._signature(self._keys[-1], sid)}"
            self._remember(self._signed, sid, value)
        return value

    def unsign(self, value: str) -> str | None:
        """The id carried by a cookie value, or None when it is not one we signed.

        Shape is checked first (length, characters) so hostile input costs no HMAC and
        never reaches the filesystem; every key is then tried with a constant-time
        comparison, so timing does not reveal how much of a forged signature matched.

        The last :data:`VERIFIED_CACHE_SIZE` values that verified are remembered, so a
        client's next requests skip the HMAC. This keeps the timing guarantee: a hit
        needs the exact string of a cookie that verified (a valid bearer token, which its
        holder can already use), and a dict lookup compares strings only after their full
        64-bit keyed hashes matched, so a forged value is never compared character by
        character with a cached one; every miss runs the constant-time check above.
        Only verified values enter the cache, and each signer (one per set of keys)
        has its own, so a key taken out of rotation stops being accepted at once.
        """
        if len(value) > MAX_COOKIE_LENGTH:
            return None
        cached = self._verified.get(value)
        if cached is not None:
            return cached
        sid, dot, signature = value.rpartition(".")
        if not dot or not value.isascii() or not is_valid_session_id(sid):
            return None
        valid = False
        for key in self._keys:
            valid |= hmac.compare_digest(self._signature(key, sid), signature)
        if not valid:
            return None
        self._remember(self._verified, value, sid)
        return sid

    def _remember(self, cache: dict[str, str], key: str, value: str) -> None:
        """Add to a bounded cache, dropping its oldest entry when full."""
        with self._lock:
            if len(cache) >= VERIFIED_CACHE_SIZE:
                del cache[next(iter(cache))]
            cache[key] = value
