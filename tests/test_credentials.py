"""TURN REST credentials (draft-uberti-behave-turn-rest-00 §2.2, as coturn's use-auth-secret checks them)."""

from __future__ import annotations

import subprocess

import pytest

from turnkit import credentials
from turnkit.credentials import Verdict
from turnkit.errors import InputError

NOW = 1_800_000_000


def openssl_password(secret: str, username: str) -> str:
    """An independent oracle: `openssl dgst -sha1 -hmac | base64`."""
    mac = subprocess.run(
        ["openssl", "dgst", "-sha1", "-hmac", secret, "-binary"],
        input=username.encode(),
        capture_output=True,
        check=True,
    ).stdout
    return subprocess.run(["base64"], input=mac, capture_output=True, check=True).stdout.decode().strip()


def test_username_is_expiry_then_user_and_password_matches_openssl() -> None:
    cred = credentials.issue("alice", "s3cret", NOW, 600)
    assert cred.username == f"{NOW + 600}:alice"
    assert cred.expires_at == NOW + 600 and cred.ttl == 600
    assert cred.password == openssl_password("s3cret", cred.username)


def test_colons_allowed_after_timestamp() -> None:
    cred = credentials.issue("tenant:alice", "k", NOW, 60)
    assert cred.username == f"{NOW + 60}:tenant:alice"
    assert credentials.verify(cred.username, cred.password, ["k"], NOW) is Verdict.OK


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("", "user id: must not be empty"),
        ("a" * 129, "user id: must be at most 128 characters, got 129"),
        ("bob\nadmin", "user id: must not contain control characters, got 'bob\\nadmin'"),
        ("bob\x00", "user id: must not contain control characters, got 'bob\\x00'"),
    ],
)
def test_bad_user_ids_are_refused(user: str, message: str) -> None:
    with pytest.raises(InputError) as exc:
        credentials.issue(user, "k", NOW, 600)
    assert str(exc.value) == message


@pytest.mark.parametrize("ttl", [59, 48 * 3600 + 1, 0, -5])
def test_ttl_bounds(ttl: int) -> None:
    with pytest.raises(InputError, match=rf"ttl: must be between 60 and 172800 seconds, got {ttl}"):
        credentials.issue("a", "k", NOW, ttl)


def test_ttl_edges_accepted() -> None:
    assert credentials.issue("a", "k", NOW, 60).expires_at == NOW + 60
    assert credentials.issue("a", "k", NOW, 172800).expires_at == NOW + 172800


def test_verify_verdicts() -> None:
    cred = credentials.issue("alice", "new", NOW, 600)
    assert credentials.verify(cred.username, cred.password, ["old", "new"], NOW) is Verdict.OK
    assert credentials.verify(cred.username, cred.password, ["other"], NOW) is Verdict.WRONG
    assert credentials.verify(cred.username, cred.password, ["new"], NOW + 600) is Verdict.EXPIRED
    assert credentials.verify(cred.username, "x" + cred.password[1:], ["new"], NOW) is Verdict.WRONG
    assert credentials.verify("alice", cred.password, ["new"], NOW) is Verdict.MALFORMED
    assert credentials.verify("abc:alice", cred.password, ["new"], NOW) is Verdict.MALFORMED


def test_wrong_secret_reported_even_when_expired() -> None:
    """A forged password must not learn whether the expiry is past (no oracle)."""
    cred = credentials.issue("alice", "real", NOW, 60)
    assert credentials.verify(cred.username, cred.password, ["guess"], NOW + 3600) is Verdict.WRONG


def test_repr_hides_password() -> None:
    cred = credentials.issue("alice", "k", NOW, 60)
    assert cred.password not in repr(cred) and "<redacted>" in repr(cred)


def test_ice_servers_shape() -> None:
    cred = credentials.issue("alice", "k", NOW, 60)
    servers = credentials.ice_servers(cred, ["stun:h:3478"], ["turn:h:3478?transport=udp"])
    assert servers == [
        {"urls": ["stun:h:3478"]},
        {"urls": ["turn:h:3478?transport=udp"], "username": cred.username, "credential": cred.password},
    ]
