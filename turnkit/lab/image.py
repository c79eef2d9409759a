"""The base image: one debootstrap of Debian bookworm, cached under a directory keyed by its inputs.

The key is a hash of everything that shapes the tree (suite, mirror, variant, packages, fixups
version), so a changed input builds a new image beside the old one and never reuses a stale one.
Builds go to a temporary directory renamed into place when complete; a lock serialises builders.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from turnkit.lab.sh import LabError, need, run

#: Bump when the fixups below change what a cached image contains.
FIXUPS_VERSION = 1
SUITE = "bookworm"
INCLUDE: tuple[str, ...] = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2", "ca-certificates", "sudo",
)  # fmt: skip
DEFAULT_CACHE = Path("/var/cache/turnkit/lab")
SOURCES_DIRS = (Path("/etc/apt/sources.list.d"), Path("/etc/apt"))


@dataclass(frozen=True)
class ImageSpec:
    """What a base image is made of; its hash names the cache entry."""

    suite: str
    mirror: str
    variant: str = "minbase"
    include: tuple[str, ...] = INCLUDE
    fixups: int = FIXUPS_VERSION

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    """`TURNKIT_LAB_CACHE`, else /var/cache/turnkit/lab."""
    return Path(os.environ.get("TURNKIT_LAB_CACHE") or DEFAULT_CACHE)


_DEB822_URI = re.compile(r"^URIs:\s*(\S+)", re.M)
_DEB822_SUITES = re.compile(r"^Suites:\s*(.+)$", re.M)
_ONE_LINE = re.compile(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s", re.M)


def mirror_from_sources(texts: list[str], suite: str = SUITE) -> str | None:
    """The first configured Debian mirror that carries `suite` (deb822 or one-line sources)."""
    for text in texts:
        for stanza in re.split(r"\n\s*\n", text):
            uri, suites = _DEB822_URI.search(stanza), _DEB822_SUITES.search(stanza)
            if uri and suites and suite in suites.group(1).split():
                return uri.group(1)
        for m in _ONE_LINE.finditer(text):
            if m.group(2) == suite:
                return m.group(1)
    return None


def host_mirror() -> str:
    """This machine's configured Debian mirror (the lab never guesses one)."""
    texts = []
    for d in SOURCES_DIRS:
        for f in sorted(d.glob("*.sources")) + sorted(d.glob("*.list")):
            texts.append(f.read_text(encoding="utf-8", errors="replace"))
    found = mirror_from_sources(texts)
    if found is None:
        raise LabError(f"lab: no Debian `{SUITE}` mirror in /etc/apt/sources.list(.d)")
    return found


def default_spec() -> ImageSpec:
    return ImageSpec(SUITE, host_mirror())


def _fixup(root: Path) -> None:
    """Make the tree a template: no host keys or machine-id (each host gets fresh ones)."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (root / "etc/apt/sources.list").write_text("")


def cached_build(
    cache: Path, name: str, *, staging: str, marker: str, tools: tuple[str, ...], build: Callable[[Path], Path]
) -> Path:
    """`cache/name`, built once when its `marker` file is missing (with `tools`, else a clear error).

    Builders are serialised by `cache/name.lock`; `build(work)` makes the tree in the private
    directory `cache/<staging>-<pid>` and returns it (or a directory inside it), which is renamed into
    place only when complete. Staging directories of builders killed half-way are removed first.
    """
    target = cache / name
    if (target / marker).exists():
        return target
    need(*tools)
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / marker).exists():
            return target
        for stale in cache.glob(f"{staging}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        work = cache / f"{staging}-{os.getpid()}"
        try:
            os.replace(build(work), target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def ensure(spec: ImageSpec, progress: Callable[[str], None], cache: Path | None = None) -> Path:
    """The cached base image for `spec`, built first when missing (~1.5 min, once)."""
    base = cache or cache_dir()
    name = f"base-{spec.key}"

    def debootstrap(build: Path) -> Path:
        progress(f"lab: building the {spec.suite} base image (once, ~1.5 min) into {base / name}")
        run(
            ["debootstrap", f"--variant={spec.variant}", f"--include={','.join(spec.include)}",
             spec.suite, str(build), spec.mirror],
            timeout=1200,
        )  # fmt: skip
        _fixup(build)
        (build / "etc/turnkit-lab-image.json").write_text(json.dumps(asdict(spec), indent=2) + "\n")
        return build

    return cached_build(
        base, name, staging=f".build-{spec.key}", marker="etc/os-release", tools=("debootstrap",), build=debootstrap
    )
