"""Time-limited TURN credentials (draft-uberti-behave-turn-rest-00, coturn `use-auth-secret`).

Pure: secrets and the clock are passed in; nothing here reads files, env or time.
"""

from __future__ import annotations

import base64
import functools
import hmac
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from turnkit.config import MAX_TTL, MIN_TTL
from turnkit.errors import InputError

MAX_USER_ID = 128


@dataclass(frozen=True)
class TurnCredential:
    """A username/password pair coturn accepts until `expires_at` (unix seconds)."""

    username: str
    password: str = field(repr=False)
    ttl: int
    expires_at: int

    def __repr__(self) -> str:
        return f"TurnCredential(username={self.username!r}, password=<redacted>, expires_at={self.expires_at})"


class Verdict(StrEnum):
    """What `verify` concluded about a username/password pair."""

    OK = "ok"
    EXPIRED = "expired"
    WRONG = "wrong"
    MALFORMED = "malformed"


def check_user_id(user_id: str) -> str:
    """Reject user ids coturn or a log line would choke on: empty, control chars, > 128 chars."""
    if not user_id:
        raise InputError("user id: must not be empty")
    if len(user_id) > MAX_USER_ID:
        raise InputError(f"user id: must be at most {MAX_USER_ID} characters, got {len(user_id)}")
    # isprintable() is False for every category C character (and for separators): the common case costs one call.
    if not user_id.isprintable() and any(unicodedata.category(ch).startswith("C") for ch in user_id):
        raise InputError(f"user id: must not contain control characters, got {user_id!r}")
    return user_id


def check_ttl(ttl: int) -> int:
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise InputError(f"ttl: must be between {MIN_TTL} and {MAX_TTL} seconds, got {ttl}")
    return ttl


def turn_username(user_id: str, expires_at: int) -> str:
    """`<expiry-unix>:<user-id>` — the timestamp comes first, as coturn parses it."""
    return f"{expires_at}:{check_user_id(user_id)}"


def turn_password(secret: str, username: str) -> str:
    """base64(HMAC-SHA1(secret, username)) — the REST API password coturn recomputes."""
    mac = _keyed(secret).copy()
    mac.update(username.encode())
    return base64.b64encode(mac.digest()).decode("ascii")


@functools.lru_cache(maxsize=8)
def _keyed(secret: str) -> hmac.HMAC:
    """HMAC-SHA1 with the key already absorbed: copying it costs ~40% of a fresh `hmac.new` (OpenSSL 3 fetches
    the digest on every new context). A handful of entries: the keyring's accepted secrets."""
    return hmac.new(secret.encode(), digestmod="sha1")


def issue(user_id: str, secret: str, now: int, ttl: int) -> TurnCredential:
    """Mint a credential for `user_id` valid for `ttl` seconds from `now`."""
    expires_at = int(now) + check_ttl(ttl)
    username = turn_username(user_id, expires_at)
    return TurnCredential(username, turn_password(secret, username), ttl, expires_at)


def expiry_of(username: str) -> int | None:
    """The expiry timestamp of a REST username, or None when it has none."""
    head, sep, _ = username.partition(":")
    return int(head) if sep and head.isdigit() else None


def verify(username: str, password: str, secrets: Iterable[str], now: int) -> Verdict:
    """Check a pair against every accepted secret, in constant time per secret."""
    expires_at = expiry_of(username)
    if expires_at is None:
        return Verdict.MALFORMED
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(turn_password(secret, username).encode(), password.encode())
    if not matched:
        return Verdict.WRONG
    return Verdict.OK if expires_at > now else Verdict.EXPIRED


def ice_servers(
    credential: TurnCredential, stun_urls: Sequence[str], turn_urls: Sequence[str]
) -> list[dict[str, object]]:
    """RTCIceServer[] ready for `new RTCPeerConnection({iceServers})`."""
    servers: list[dict[str, object]] = []
    if stun_urls:
        servers.append({"urls": list(stun_urls)})
    if turn_urls:
        servers.append({"urls": list(turn_urls), "username": credential.username, "credential": credential.password})
    return servers
