"""The cheap credentials path (issue 13 item 4): the verified-token cache, the once-a-second looks at the
keyring and health files, and the prebuilt per-region URL lists. Decisions only, no timing."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jwt
import pytest

from signaling.auth import CACHE_ENTRIES, CACHE_TOKEN_MAX, AuthError, Identity, TokenCache, Verifier
from signaling.ice import FileHealth, IceProvider, NoHealth
from signaling.keysource import MISSING, KeySource
from tests.helpers.signaling import JWT_SECRET, make_token, write_config
from turnkit import credentials, health, keyring
from turnkit.credentials import Verdict
from turnkit.health import NodeHealth

OTHER_SECRET = "another-jwt-secret-long-enough-for-hs256-use"


class Clock:
    """A settable clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def verifier(**kw: object) -> Verifier:
    return Verifier(("HS256",), JWT_SECRET, **kw)  # type: ignore[arg-type]


def decision(v: Verifier, token: str) -> Identity | str:
    try:
        return v.verify(token)
    except AuthError as exc:
        return f"refused: {exc}"


TOKENS = {
    "valid": make_token("alice"),
    "valid-with-region": make_token("bob", region="eu"),
    "expired": make_token("alice", ttl=-120),
    "wrong-secret": make_token("alice", secret=OTHER_SECRET),
    "bad-sub": make_token("\x00evil"),
    "not-yet-valid": make_token("alice", nbf=int(time.time()) + 3600),
    "wrong-audience": make_token("alice", aud="someone-else"),
    "garbage": "not.a.jwt",
}


@pytest.mark.parametrize("name", TOKENS)
def test_cached_decision_equals_fresh_decision(name: str) -> None:
    """Asked again, a verifier answers exactly as it did the first time and as an empty one does."""
    v = verifier(audience="turnkit")
    token = TOKENS[name] if name != "valid" else make_token("alice", aud="turnkit")
    first = decision(v, token)
    again = [decision(v, token) for _ in range(3)]
    fresh = decision(verifier(audience="turnkit"), token)
    assert again == [first] * 3 and fresh == first
    # Only accepted tokens are remembered.
    assert len(v.cache) == (1 if isinstance(first, Identity) else 0)


def test_cache_hit_skips_the_signature_check() -> None:
    v = verifier()
    token = make_token("carol", region="eu")
    assert v.verify(token) == Identity("carol", "eu")
    assert v.cache.get(token, time.time()) == Identity("carol", "eu")
    # A token that differs in one byte of its signature is a different key: checked in full, refused.
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert decision(v, forged) == "refused: token signature invalid"


@pytest.mark.parametrize("leeway", [0, 30])
def test_expired_token_is_refused_even_when_cached(leeway: int) -> None:
    """Cached until the instant PyJWT would refuse it (`exp <= now - leeway`), not a moment longer."""
    clock = Clock(time.time())
    v = verifier(leeway=leeway, clock=clock)
    exp = int(time.time()) + 60
    token = jwt.encode({"sub": "dave", "exp": exp}, JWT_SECRET, algorithm="HS256")
    assert v.verify(token) == Identity("dave")
    clock.now = exp + leeway - 0.001
    assert v.verify(token) == Identity("dave")
    clock.now = exp + leeway
    assert decision(v, token) == "refused: token expired"
    assert len(v.cache) == 0
    # PyJWT agrees about the same instant from the other side: within leeway it still accepts.
    late = jwt.encode({"sub": "dave", "exp": int(time.time()) - leeway + 2}, JWT_SECRET, algorithm="HS256")
    assert decision(verifier(leeway=leeway), late) == Identity("dave")


def test_cache_is_bounded_and_least_recently_used_goes_first() -> None:
    cache = TokenCache(size=3)
    who = {t: Identity(t) for t in "abcd"}
    for t in "abc":
        cache.put(t, who[t], 1e18)
    assert cache.get("a", 0) == who["a"]  # a is now the most recent; b the least
    cache.put("d", who["d"], 1e18)
    assert len(cache) == 3
    assert [cache.get(t, 0) for t in "abcd"] == [who["a"], None, who["c"], who["d"]]


def test_verifier_cache_holds_at_most_its_bound() -> None:
    v = verifier()
    tokens = [make_token(f"user-{i}") for i in range(CACHE_ENTRIES + 20)]
    for token in tokens:
        v.verify(token)
    assert len(v.cache) == CACHE_ENTRIES
    assert v.cache.get(tokens[0], time.time()) is None and v.cache.get(tokens[-1], time.time()) is not None
    # Oversized tokens are verified every time and never held.
    big = make_token("erin", pad="x" * CACHE_TOKEN_MAX)
    before = len(v.cache)
    assert v.verify(big) == Identity("erin") and len(v.cache) == before


def test_revoked_key_invalidates_cached_tokens(tmp_path: Path) -> None:
    """A verifier with other keys (secret rotated, JWKS changed) starts with an empty cache."""
    v = verifier()
    token = make_token("frank")
    assert v.verify(token) == Identity("frank")
    rotated = dataclasses.replace(v, secret=OTHER_SECRET)
    assert len(rotated.cache) == 0
    assert decision(rotated, token) == "refused: token signature invalid"
    assert rotated.verify(make_token("frank", secret=OTHER_SECRET)) == Identity("frank")
    no_hs = dataclasses.replace(v, algorithms=("RS256",), secret=None)
    assert decision(no_hs, token) == "refused: token algorithm not accepted"


def test_keyring_is_looked_at_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "ring.json"
    old = keyring.init(int(time.time()))
    keyring.save(path, old)
    clock = Clock(100.0)
    keys = KeySource(path, clock)
    new = keyring.rotate(old, int(time.time()))
    keyring.save(path, new)
    assert keys.current().primary.id == old.primary.id
    clock.now = 100.999
    assert keys.current().primary.id == old.primary.id
    clock.now = 101.0
    assert keys.current().primary.id == new.primary.id
    # /readyz always looks: a removed file is reported at once, the last good keyring keeps issuing.
    path.unlink()
    assert keys.ready() == MISSING
    assert keys.current().primary.id == new.primary.id


def test_health_file_is_looked_at_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    clock = Clock(50.0)
    source = FileHealth(path, clock)
    assert source.current() == {}
    health.write_file(path, {"local/turn-1": NodeHealth(False, int(time.time()), ("allocate",))})
    assert source.current() == {}
    clock.now = 51.0
    assert not source.current()["local/turn-1"].ok


def test_region_urls_are_built_once_and_rebuilt_on_health_change(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, regions__local={"provider": "local", "nodes": 2})
    clock = Clock(10.0)
    hpath = tmp_path / "health.json"
    ice = IceProvider(cfg, KeySource(cfg.secrets_path), FileHealth(hpath, clock))
    a, b = ice.issue("alice", "local"), ice.issue("bob", "local")
    assert a.turn_urls is b.turn_urls and len(a.turn_urls) == 6
    assert a.servers[0] == {"urls": ["stun:127.0.0.1:3478", "stun:127.0.0.2:3478"]}
    # Only the credential differs, and each one is a valid TURN REST credential for its user.
    secret = keyring.load(cfg.secrets_path).primary.value
    for ice_set, user in ((a, "alice"), (b, "bob")):
        server = ice_set.servers[1]
        assert server["urls"] == ice_set.turn_urls and str(server["username"]).endswith(f":{user}")
        assert credentials.verify(str(server["username"]), str(server["credential"]), [secret], 0) is Verdict.OK
    health.write_file(hpath, {"local/turn-1": NodeHealth(False, int(time.time()), ("allocate",))})
    clock.now = 11.0
    c = ice.issue("carol", "local")
    assert c.turn_urls is not a.turn_urls and {u.split(":")[1] for u in c.turn_urls} == {"127.0.0.2"}
    assert len(a.turn_urls) == 6  # sets issued earlier keep what they were issued with


def test_no_region_means_no_servers_but_a_credential(tmp_path: Path) -> None:
    ice = IceProvider(write_config(tmp_path), KeySource(write_config(tmp_path).secrets_path), NoHealth())
    empty = ice.issue("alice", None)
    assert (empty.servers, empty.turn_urls) == ([], []) and empty.credential.username.endswith(":alice")


@pytest.mark.parametrize("user", ["alice", 'qu"ote\\back', "ünïcødé-用户", "tenant:alice"])
@pytest.mark.parametrize("nodes", [1, 3])
def test_prebuilt_body_is_the_json_of_the_ice_set(tmp_path: Path, user: str, nodes: int) -> None:
    """`/api/ice-servers` splices the credential into pre-encoded URL lists; the result parses to the same document."""
    cfg = write_config(tmp_path, regions__local={"provider": "local", "nodes": nodes})
    ice = IceProvider(cfg, KeySource(cfg.secrets_path), NoHealth())
    issued = ice.issue(user, "local")
    doc = json.loads(issued.document())
    assert doc == {"iceServers": issued.servers, "ttl": issued.ttl, "expiresAt": issued.expires_at}
    assert doc["iceServers"][1]["username"] == f"{issued.expires_at}:{user}"
    assert len(doc["iceServers"][1]["urls"]) == 3 * nodes
    none = ice.issue(user, None)
    assert json.loads(none.document()) == {"iceServers": [], "ttl": none.ttl, "expiresAt": none.expires_at}


def test_remember_false_uses_the_cache_but_adds_nothing() -> None:
    """WebSocket upgrades show a token once: verified in full, not kept; a token kept by the API is reused."""
    v = verifier()
    once, kept = make_token("gina"), make_token("hugo")
    assert v.verify(once, remember=False) == Identity("gina") and len(v.cache) == 0
    assert v.verify(kept) == Identity("hugo") and len(v.cache) == 1
    assert v.verify(kept, remember=False) == Identity("hugo") and len(v.cache) == 1
    assert decision(v, make_token("gina", ttl=-120)) == "refused: token expired"
