"""Debian packages for hosts without internet: a flat repository served on the bridge address.

The repository is resolved against the base image's own dpkg status (so it holds exactly what
the hosts lack), downloaded from this machine's configured mirror, indexed with
`dpkg-scanpackages` and cached under a directory keyed by its inputs like the base image.
Hosts use `deb [trusted=yes] http://198.18.0.1:PORT/ ./`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from turnkit.lab.daemon import Daemon
from turnkit.lab.image import ImageSpec, cached_build
from turnkit.lab.sh import LabError, run
from turnkit.lab.topology import BRIDGE_IP

APT_PORT = 3142
#: What the shipped roles install (coturn, nginx, certbot, signaling venv) plus Ansible's apt needs.
PACKAGES: tuple[str, ...] = (
    "coturn", "nginx", "ssl-cert", "libnginx-mod-stream", "certbot", "python3-venv", "python3-pip",
    "python3-apt", "openssl", "procps",
)  # fmt: skip


def source_line(port: int = APT_PORT) -> str:
    return f"deb [trusted=yes] http://{BRIDGE_IP}:{port}/ ./"


def repo_key(image: ImageSpec, packages: tuple[str, ...]) -> str:
    raw = json.dumps({"image": image.key, "packages": sorted(packages)}).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def _apt_options(work: Path, base: Path, mirror: str, suite: str) -> list[str]:
    """apt-get resolving against the base image's installed packages, with private lists and cache."""
    (work / "lists/partial").mkdir(parents=True, exist_ok=True)
    (work / "archives/partial").mkdir(parents=True, exist_ok=True)
    (work / "sources.list").write_text(f"deb {mirror} {suite} main\n")
    (work / "empty.d").mkdir(exist_ok=True)
    return [
        "-o", f"Dir::State::status={base / 'var/lib/dpkg/status'}",
        "-o", f"Dir::State::Lists={work / 'lists'}",
        "-o", f"Dir::Cache={work}",
        "-o", f"Dir::Cache::archives={work / 'archives'}",
        "-o", f"Dir::Etc::SourceList={work / 'sources.list'}",
        "-o", f"Dir::Etc::SourceParts={work / 'empty.d'}",
        "-o", f"Dir::Etc::Preferences={work / 'none'}",
        "-o", f"Dir::Etc::PreferencesParts={work / 'empty.d'}",
        "-o", "APT::Get::AllowUnauthenticated=false",
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Install-Recommends=false",
    ]  # fmt: skip


def ensure_repo(
    image: ImageSpec, base: Path, cache: Path, progress: Callable[[str], None], packages: tuple[str, ...] = PACKAGES
) -> Path:
    """The cached flat repository for `packages` on top of `base`, built when missing."""
    key = repo_key(image, packages)

    def download(work: Path) -> Path:
        progress(f"lab: downloading {len(packages)} package(s) and their dependencies from {image.mirror}")
        opts = _apt_options(work, base, image.mirror, image.suite)
        run(["apt-get", *opts, "update", "-q"], timeout=600)
        run(["apt-get", *opts, "install", "-y", "-q", "--download-only", *packages], timeout=1200)
        repo = work / "repo"
        repo.mkdir()
        for deb in (work / "archives").glob("*.deb"):
            os.replace(deb, repo / deb.name)
        _index(repo)
        return repo

    return cached_build(
        cache, f"repo-{key}", staging=f".repo-build-{key}", marker="Packages",
        tools=("apt-get", "dpkg-scanpackages"), build=download,
    )  # fmt: skip


def _index(repo: Path) -> None:
    """Write `Packages` for the flat repository (dpkg-scanpackages run inside it)."""
    proc = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", "."],
        cwd=repo, capture_output=True, text=True, timeout=300, env={**os.environ, "LC_ALL": "C"},
    )  # fmt: skip
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise LabError(f"lab: dpkg-scanpackages failed: {tail}")
    (repo / "Packages").write_text(proc.stdout)


# -- the server ------------------------------------------------------------------------------


def server(repo: Path, port: int = APT_PORT) -> Daemon:
    """`python -m http.server` for `repo`, bound to the bridge address only."""
    argv = [sys.executable, "-m", "http.server", "--bind", BRIDGE_IP, "--directory", str(repo), str(port)]
    return Daemon("apt", argv, (BRIDGE_IP, port))
