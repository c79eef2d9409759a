"""The TURN secret keyring as the signaling service sees it: re-read whenever the file changes.

`turnkit secret rotate/promote` rewrites the file atomically; the next credential issued after that
uses the new primary, without a restart. If the file later becomes unreadable or malformed, the last
good keyring keeps issuing, `error` says why (for the log) and `ready()` gives a generic reason (for the
unauthenticated `/readyz`, which must not reveal paths).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from turnkit import keyring
from turnkit.errors import SecretStoreError

log = logging.getLogger(__name__)

#: What `/readyz` may say about the keyring.
MISSING = "no secret keyring"
UNUSABLE = "secret keyring unusable"


def load(path: Path) -> keyring.Keyring:
    """The keyring with a usable primary; any defect of the file is a SecretStoreError (never another error)."""
    try:
        ring = keyring.load(path)
        value = ring.primary.value
    except SecretStoreError:
        raise
    except Exception as exc:  # a malformed file: bad UTF-8, odd JSON shapes, nesting too deep
        raise SecretStoreError(f"{path}: not a turnkit secret keyring ({type(exc).__name__})") from None
    if not isinstance(value, str) or not value:
        raise SecretStoreError(f"{path}: the primary secret is not a non-empty string")
    return ring


class KeySource:
    """Loads the keyring at startup (raising SecretStoreError) and reloads it on mtime change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: str | None = None
        self.reason: str | None = None
        self._stamp = self._stat()
        self._ring = load(path)  # fail at startup, not at the first join

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> keyring.Keyring:
        """The keyring as of now (a stat per call; a read only when the file changed)."""
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                ring = load(self.path)
            except SecretStoreError as exc:
                self.error, self.reason = str(exc), MISSING if stamp is None else UNUSABLE
                log.error("secret keyring reload failed, still issuing with the previous one: %s", exc)
            else:
                self._ring, self.error, self.reason = ring, None, None
                log.info("secret keyring reloaded (primary %s)", ring.primary.id)
        return self._ring

    def ready(self) -> str | None:
        """None when the keyring is loadable now, else a generic reason (no path, no detail)."""
        self.current()
        return self.reason
