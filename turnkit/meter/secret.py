"""The statsdb Redis password of each node: HMAC of a meter master secret, so one leak opens one node."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets as _random
from pathlib import Path

from turnkit.errors import SecretStoreError
from turnkit.fsutil import atomic_write

#: Characters coturn's statsdb connection string takes (a space breaks it, see docs/metering.md).
PASSWORD_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


def node_password(master: str, node: str) -> str:
    """The statsdb password of `node` (hex, no characters coturn's connection string would split)."""
    return hmac.new(master.encode(), f"turnkit-statsdb:{node}".encode(), hashlib.sha256).hexdigest()


def load_or_create(path: Path) -> str:
    """The meter master secret in `path` (0600), created on first use."""
    try:
        value = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        value = _random.token_urlsafe(32)
        atomic_write(path, value + "\n", mode=0o600)
        return value
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretStoreError(f"{path}: cannot read the meter secret: {exc}") from None
    if not PASSWORD_RE.match(value):
        raise SecretStoreError(f"{path}: meter secret must be 16-128 characters of [A-Za-z0-9_-]")
    return value
