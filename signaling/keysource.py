"""The TURN secret keyring as the signaling service sees it: re-read whenever the file changes.

`turnkit secret rotate/promote` rewrites the file atomically; the next credential issued after that
uses the new primary, without a restart. If the file later becomes unreadable, the last good keyring
keeps issuing and `error` says why (so `/readyz` can fail).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from turnkit import keyring
from turnkit.errors import SecretStoreError

log = logging.getLogger(__name__)


class KeySource:
    """Loads the keyring at startup (raising SecretStoreError) and reloads it on mtime change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: str | None = None
        self._stamp = self._stat()
        self._ring = keyring.load(path)
        self._ring.primary  # noqa: B018 - fail at startup, not at the first join

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
                ring = keyring.load(self.path)
                ring.primary  # noqa: B018
            except SecretStoreError as exc:
                self.error = str(exc)
                log.error("secret keyring reload failed, still issuing with the previous one: %s", exc)
            else:
                self._ring, self.error = ring, None
                log.info("secret keyring reloaded (primary %s)", ring.primary.id)
        return self._ring

    def ready(self) -> str | None:
        """None when the keyring is loadable now, else the reason."""
        self.current()
        return self.error
