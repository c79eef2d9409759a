"""The TURN secret keyring as the signaling service sees it: re-read whenever the file changes.

`turnkit secret rotate/promote` rewrites the file atomically; the next credential issued after that
uses the new primary, without a restart. If the file later becomes unreadable or malformed, the last
good keyring keeps issuing, `error` says why (for the log) and `ready()` gives a generic reason (for the
unauthenticated `/readyz`, which must not reveal paths).

The file is looked at (one stat) at most once per `RECHECK` seconds, not per credential: a rotation
takes effect within a second. `ready()` always looks.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from turnkit import keyring
from turnkit.errors import SecretStoreError

log = logging.getLogger(__name__)

#: What `/readyz` may say about the keyring.
MISSING = "no secret keyring"
UNUSABLE = "secret keyring unusable"
#: Seconds between looks at the keyring file.
RECHECK = 1.0


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

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.clock = clock
        self.error: str | None = None
        self.reason: str | None = None
        self._stamp = self._stat()
        self._ring = load(path)  # fail at startup, not at the first join
        self._checked = clock()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> keyring.Keyring:
        """The keyring as of at most `RECHECK` seconds ago (a read only when the file changed)."""
        now = self.clock()
        if now - self._checked < RECHECK:
            return self._ring
        return self._reload(now)

    def _reload(self, now: float) -> keyring.Keyring:
        self._checked = now
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
        self._reload(self.clock())
        return self.reason
