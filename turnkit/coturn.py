"""Facts about the coturn binary at hand (I/O edge: runs `turnserver --version`)."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

from turnkit.config import Config
from turnkit.render import DEFAULT_COTURN_VERSION

_VERSION = re.compile(r"(\d+\.\d+\.\d+)")


@functools.cache
def detect_version(binary: str = "turnserver") -> str | None:
    """The local coturn version, or None when no turnserver is installed."""
    path = shutil.which(binary)
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(out.stdout + out.stderr)
    return match.group(1) if match else None


def target_version(cfg: Config) -> str:
    """Configured `coturn.version`, else the local binary's, else Debian 12's 4.6.1."""
    return cfg.coturn.version or detect_version() or DEFAULT_COTURN_VERSION
