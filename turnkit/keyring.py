"""The TURN shared-secret keyring: one primary that issues, older ones still accepted.

The pure part (`Keyring`) takes `now` and randomness as arguments; `load`/`save` are the I/O edge.
Rotation is two-phase so a fleet never sees a credential its coturn does not know yet:
`rotate(stage=True)` adds an accepted-only secret, `promote` makes it primary once deployed.
"""

from __future__ import annotations

import json
import os
import secrets as _random
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from turnkit.errors import SecretStoreError
from turnkit.fsutil import atomic_write

FORMAT_VERSION = 1
#: Where services find the keyring when systemd hands it over (LoadCredential); wins over the config.
ENV_VAR = "TURNKIT_SECRETS_FILE"


@dataclass(frozen=True)
class Secret:
    """One shared secret; `retired_at` is when it stopped being primary (None while primary/staged)."""

    id: str
    value: str = field(repr=False)
    created_at: int
    primary: bool = False
    retired_at: int | None = None

    def __repr__(self) -> str:
        return f"Secret(id={self.id!r}, value=<redacted>, primary={self.primary})"

    @property
    def staged(self) -> bool:
        return not self.primary and self.retired_at is None


@dataclass(frozen=True)
class Keyring:
    """All secrets coturn accepts, newest first; exactly one is primary once initialised."""

    secrets: tuple[Secret, ...] = ()

    @property
    def primary(self) -> Secret:
        for s in self.secrets:
            if s.primary:
                return s
        raise SecretStoreError("secret keyring: no primary secret (run `turnkit secret init`)")

    @property
    def accepted(self) -> list[str]:
        """Every secret value coturn must accept, in a stable order: promoting a staged secret
        changes nothing in coturn's config, so it restarts no node."""
        return sorted(s.value for s in self.secrets)

    def get(self, secret_id: str) -> Secret:
        for s in self.secrets:
            if s.id == secret_id:
                return s
        raise SecretStoreError(f"secret keyring: no secret with id `{secret_id}`")


def new_secret(now: int, primary: bool, token: str | None = None) -> Secret:
    value = token if token is not None else _random.token_urlsafe(32)
    return Secret(id=f"s{now}-{_random.token_hex(2)}", value=value, created_at=now, primary=primary)


def init(now: int) -> Keyring:
    return Keyring((new_secret(now, primary=True),))


def rotate(ring: Keyring, now: int, stage: bool = False) -> Keyring:
    """Add a new secret; unless staged it becomes primary at once and the old primary retires."""
    fresh = new_secret(now, primary=not stage)
    if stage:
        return Keyring((fresh, *ring.secrets))
    return Keyring((fresh, *(_retire(s, now) for s in ring.secrets)))


def promote(ring: Keyring, secret_id: str, now: int) -> Keyring:
    """Make a (staged) secret the one that issues; the previous primary retires now."""
    target = ring.get(secret_id)
    if target.retired_at is not None:
        raise SecretStoreError(f"secret keyring: secret `{secret_id}` is retired and cannot be promoted")
    return Keyring(tuple(replace(s, primary=True) if s.id == secret_id else _retire(s, now) for s in ring.secrets))


def prune(ring: Keyring, now: int, grace: int) -> tuple[Keyring, list[Secret]]:
    """Drop secrets retired at least `grace` seconds ago (credentials they signed have expired)."""
    keep = tuple(s for s in ring.secrets if s.retired_at is None or now - s.retired_at < grace)
    return Keyring(keep), [s for s in ring.secrets if s not in keep]


def _retire(s: Secret, now: int) -> Secret:
    return replace(s, primary=False, retired_at=now) if s.primary else s


def to_json(ring: Keyring) -> str:
    items = [
        {"id": s.id, "value": s.value, "created_at": s.created_at, "primary": s.primary, "retired_at": s.retired_at}
        for s in ring.secrets
    ]
    return json.dumps({"version": FORMAT_VERSION, "secrets": items}, indent=2) + "\n"


def from_json(text: str, origin: str) -> Keyring:
    try:
        doc: Any = json.loads(text)
        ring = Keyring(tuple(Secret(**item) for item in doc["secrets"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise SecretStoreError(f"{origin}: not a turnkit secret keyring ({type(exc).__name__})") from None
    if sum(s.primary for s in ring.secrets) != 1:
        raise SecretStoreError(f"{origin}: keyring must have exactly one primary secret")
    return ring


def path_for(secrets_path: Path | None, env: Mapping[str, str] | None = None) -> Path | None:
    """$TURNKIT_SECRETS_FILE if set, else the config's `project.secrets_file` (None: no config)."""
    override = (os.environ if env is None else env).get(ENV_VAR)
    return Path(override) if override else secrets_path


def load(path: Path) -> Keyring:
    """Read the keyring; refuse files that others can read."""
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretStoreError(f"{path}: no secret keyring (run `turnkit secret init`)") from None
    except OSError as exc:
        raise SecretStoreError(f"{path}: cannot read: {exc.strerror}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise SecretStoreError(f"{path}: mode {stat.S_IMODE(st.st_mode):04o} is too open, expected 0600")
    return from_json(text, str(path))


def save(path: Path, ring: Keyring) -> None:
    """Write the keyring atomically with mode 0600."""
    old_umask = os.umask(0o077)
    try:
        atomic_write(path, to_json(ring), mode=0o600)
    finally:
        os.umask(old_umask)
