"""Client authentication: a JWT (RFC 7519) from `?token=` or `Authorization: Bearer`, checked with PyJWT.

HS256 uses a shared secret from the environment; RS256/ES256 use a PEM public key or a JWKS file
(RFC 7517). `exp` and `sub` are required; `nbf`, `aud` and `iss` are checked when configured, with leeway.

A verified token is remembered until the instant PyJWT would call it expired (`exp` + leeway), so a
client's repeated requests skip the signature check. The cache belongs to one `Verifier`: keys are
never swapped under it, a verifier with other keys (a revoked key, a changed JWKS) starts empty.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from turnkit.config import Config
from turnkit.credentials import check_user_id
from turnkit.errors import ConfigError, InputError

try:
    from jwt.warnings import InsecureKeyLengthWarning
except ImportError:  # PyJWT < 2.10 has no key-length warning
    InsecureKeyLengthWarning = UserWarning  # type: ignore[misc,assignment]

log = logging.getLogger(__name__)

MIN_HMAC_KEY = 32
#: Verified tokens remembered per verifier (least recently used dropped first).
CACHE_ENTRIES = 4096
#: Longer tokens are verified every time: the cache holds at most ~8 MiB of token text.
CACHE_TOKEN_MAX = 2048

#: The key type each asymmetric algorithm needs (RFC 7518 §3.3, §3.4).
KEY_TYPES: dict[str, type] = {"RS256": rsa.RSAPublicKey, "ES256": ec.EllipticCurvePublicKey}

#: PyJWT failure → the text the client sees in the 401 body (never the token itself).
REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "token audience not accepted"),
    (jwt.InvalidIssuerError, "token issuer not accepted"),
    (jwt.InvalidSignatureError, "token signature invalid"),
    (jwt.DecodeError, "token malformed"),
)


class AuthError(Exception):
    """Why a request is refused with 401; the text is safe to show the client."""


@dataclass(frozen=True)
class Identity:
    """Who connected: `user` is the JWT `sub` (the TURN user id); `region` an optional claim."""

    user: str
    region: str | None = None


class TokenCache:
    """Tokens that passed verification → (identity, the time from which PyJWT refuses them), LRU-bounded.

    Only successes are kept: a refused token is checked again in full each time.
    """

    def __init__(self, size: int = CACHE_ENTRIES) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[Identity, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str, now: float) -> Identity | None:
        """The cached identity, None on a miss; AuthError (and the entry dropped) once it has expired."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        if now >= entry[1]:
            del self._entries[token]
            raise AuthError("token expired")
        self._entries.move_to_end(token)
        return entry[0]

    def put(self, token: str, identity: Identity, refuse_at: float) -> None:
        if len(token) > CACHE_TOKEN_MAX:
            return
        self._entries[token] = (identity, refuse_at)
        self._entries.move_to_end(token)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


@dataclass(frozen=True)
class Verifier:
    """Checks tokens against the configured algorithms and keys."""

    algorithms: tuple[str, ...]
    secret: str | None = field(default=None, repr=False)
    public_keys: tuple[Any, ...] = ()
    jwks: Mapping[str, Any] = field(default_factory=dict)
    audience: str | None = None
    issuer: str | None = None
    leeway: int = 30
    #: Wall clock for cached tokens; PyJWT checks fresh ones against `time.time()` too.
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)
    cache: TokenCache = field(init=False, default_factory=TokenCache, repr=False, compare=False)

    def _key(self, header: Mapping[str, Any]) -> Any:
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise AuthError("token algorithm not accepted")
        if alg == "HS256":
            if self.secret is None:
                raise AuthError("token algorithm not accepted")
            return self.secret
        want = KEY_TYPES[alg]
        kid = header.get("kid")
        if isinstance(kid, str) and kid in self.jwks:
            candidates: list[Any] = [self.jwks[kid]]
        else:
            candidates = [*self.public_keys, *(self.jwks.values() if kid is None else ())]
        for key in candidates:
            if isinstance(key, want):
                return key
        raise AuthError("no key for this token")

    def verify(self, token: str, remember: bool = True) -> Identity:
        """The token's identity, or AuthError with a reason safe to show; cached until the token expires
        (`remember=False`: use the cache but add nothing, for a token that is shown once per connection)."""
        cached = self.cache.get(token, self.clock())
        if cached is not None:
            return cached
        identity, exp = self._verify(token)
        if remember:
            # PyJWT refuses once `exp <= now - leeway` (its `_validate_exp`): the same instant here.
            self.cache.put(token, identity, exp + self.leeway)
        return identity

    def _verify(self, token: str) -> tuple[Identity, int]:
        """Full check: header, key, signature, claims; the identity and the token's `exp`."""
        try:
            header = jwt.get_unverified_header(token)
            key = self._key(header)
            claims = jwt.decode(
                token,
                key,
                algorithms=[header["alg"]],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except AuthError:
            raise
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token lacks the `{exc.claim}` claim") from None
        except jwt.PyJWTError as exc:
            reason = next((text for kind, text in REASONS if isinstance(exc, kind)), "token invalid")
            raise AuthError(reason) from None
        try:
            user = check_user_id(claims["sub"] if isinstance(claims["sub"], str) else "")
        except InputError:
            raise AuthError("token `sub` is not a usable user id") from None
        region = claims.get("region")
        return Identity(user, region if isinstance(region, str) else None), int(claims["exp"])


def bearer(authorization: list[str], query: Mapping[str, list[str]]) -> str:
    """The token from `Authorization: Bearer …` (all values of that header) or `?token=…`; AuthError
    when there is none, or more than one header."""
    if len(authorization) > 1:
        raise AuthError("more than one Authorization header")
    value = authorization[0] if authorization else ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    tokens = query.get("token")
    if tokens and tokens[0]:
        return tokens[0]
    raise AuthError("missing token")


def _public_key(path: Path) -> Any:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"signaling.jwt.public_key_file: cannot read `{path}`: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"signaling.jwt.public_key_file: `{path}` is not a PEM public key") from None
    if not isinstance(key, tuple(KEY_TYPES.values())):
        raise ConfigError(f"signaling.jwt.public_key_file: `{path}` must hold an RSA or EC public key")
    return key


def _jwks(path: Path) -> dict[str, Any]:
    try:
        keyset = jwt.PyJWKSet.from_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"signaling.jwt.jwks_file: cannot read `{path}`: {exc.strerror}") from None
    except (jwt.PyJWKSetError, jwt.InvalidKeyError, ValueError, json.JSONDecodeError):
        raise ConfigError(f"signaling.jwt.jwks_file: `{path}` is not a usable JWKS document") from None
    return {k.key_id or f"#{i}": k.key for i, k in enumerate(keyset.keys)}


def load_verifier(cfg: Config, env: Mapping[str, str]) -> Verifier:
    """Build the verifier from config, environment and key files (the I/O edge of this module)."""
    jcfg = cfg.signaling.jwt
    secret = env.get(jcfg.secret_env) or None
    if "HS256" in jcfg.algorithms and secret is None:
        raise ConfigError(f"signaling.jwt: HS256 needs a secret in the `{jcfg.secret_env}` environment variable")
    if secret is not None and len(secret.encode()) < MIN_HMAC_KEY:
        log.warning("signaling.jwt: the HS256 secret is shorter than %d bytes (RFC 7518 §3.2)", MIN_HMAC_KEY)
        # Said once here; PyJWT would otherwise warn on every verification.
        warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)
    public = (_public_key(cfg.resolve(jcfg.public_key_file)),) if jcfg.public_key_file else ()
    jwks = _jwks(cfg.resolve(jcfg.jwks_file)) if jcfg.jwks_file else {}
    asym = [a for a in jcfg.algorithms if a != "HS256"]
    if asym and not public and not jwks:
        raise ConfigError(f"signaling.jwt: {', '.join(asym)} needs public_key_file or jwks_file")
    return Verifier(tuple(jcfg.algorithms), secret, public, jwks, jcfg.audience, jcfg.issuer, jcfg.leeway)
