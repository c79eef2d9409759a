"""A throwaway Debian bookworm chroot for running the Ansible roles for real.

The debootstrap result is cached as a tarball (created automatically when missing) and
extracted once per test session, so only the first run on a machine pays for debootstrap.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

CACHE_DIR = Path(os.environ.get("TURNKIT_TEST_CACHE", "/var/cache/turnkit-test"))
BASE_TAR = CACHE_DIR / "bookworm-base.tar"
SUITE = "bookworm"
FALLBACK_MIRROR = "http://deb.debian.org/debian"

#: Keeps maintainer scripts from starting daemons inside the chroot (invoke-rc.d convention).
POLICY_RC_D = "#!/bin/sh\n# turnkit test chroot: never start services from package scripts.\nexit 101\n"


def debian_mirror(sources: Path = Path("/etc/apt/sources.list.d")) -> str:
    """The host's Debian mirror (deb822 `URIs:` or one-line `deb` entries), not the security one."""
    texts = [p.read_text(errors="replace") for p in sorted(sources.glob("*")) if p.is_file()]
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        texts.append(legacy.read_text(errors="replace"))
    for text in texts:
        for uri in re.findall(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, flags=re.M):
            if "debian" in uri and "security" not in uri:
                return uri
    return FALLBACK_MIRROR


def build_base(tar: Path = BASE_TAR) -> None:
    """debootstrap a minimal bookworm with python3 and store it as `tar` (atomically)."""
    tar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tar.parent, prefix=".build-") as tmp:
        root = Path(tmp) / "root"
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3", SUITE, str(root), debian_mirror()],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text(POLICY_RC_D)
        policy.chmod(0o755)
        # apt's package lists and downloaded debs are not part of the base image.
        subprocess.run(["chroot", str(root), "apt-get", "clean"], check=True)
        partial = tar.with_suffix(".tar.partial")
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cpf", str(partial), "."], check=True)
        partial.rename(tar)


def ensure_base(tar: Path = BASE_TAR) -> Path:
    """The cached base tarball, built under a lock when missing."""
    tar.parent.mkdir(parents=True, exist_ok=True)
    with open(tar.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tar.exists():
            build_base(tar)
    return tar


@contextlib.contextmanager
def debian_chroot(parent: Path) -> Iterator[Path]:
    """Extract the base into `parent/root` with the host's resolver; remove it afterwards."""
    root = parent / "root"
    root.mkdir(parents=True)
    try:
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-xpf", str(ensure_base())], check=True)
        shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
