"""The wheelhouse `turnkit deploy` ships to every host: turnkit's wheel and its dependencies.

It ships as one tar archive (`archive`). Hosts never need PyPI: they install with `pip install --no-index --find-links`. The
dependency versions are exactly the controller's (its `pip freeze` is the constraints file), and
the wheels match the controller's Python and platform (Debian 12's python3.11 on both ends).
The dependency wheels are downloaded once per set of inputs and kept in a cache (`cache_root`);
turnkit's own wheel is built every time (seconds, byte-identical for identical sources).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from turnkit import __version__
from turnkit.errors import TurnkitError
from turnkit.fsutil import atomic_write


class WheelhouseError(TurnkitError):
    """The wheelhouse could not be built (no source tree, a dependency without a wheel)."""


def source_tree() -> Path:
    """Where this turnkit was installed from (an editable or local-directory install)."""
    try:
        raw = importlib.metadata.distribution("turnkit").read_text("direct_url.json")
        url = json.loads(raw or "{}").get("url", "")
    except (importlib.metadata.PackageNotFoundError, ValueError):
        url = ""
    path = Path(url.removeprefix("file://")) if url.startswith("file://") else None
    if path is None or not (path / "pyproject.toml").exists():
        raise WheelhouseError("wheelhouse: turnkit was not installed from a source tree (pip install -e .)")
    return path


def _pip(args: list[str], what: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("ERROR")] or proc.stderr.splitlines()
        raise WheelhouseError(f"wheelhouse: {what} failed: {lines[-1] if lines else proc.returncode}")


def constraints() -> str:
    """The controller's installed versions, without turnkit itself or direct references."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, timeout=120
    )
    keep = [ln for ln in proc.stdout.splitlines() if "==" in ln and not ln.lower().startswith("turnkit==")]
    return "\n".join(keep) + "\n"


_REQUIRES = re.compile(r"^Requires-Dist:\s*([A-Za-z0-9._-]+)[^;]*;(.*)$", re.M)


def version_gated(dest: Path) -> set[str]:
    """Dependencies gated on the Python version (`async-timeout; python_full_version < "3.11.3"`).

    pip evaluates markers for the controller's interpreter; the host's Python may be older within
    the same minor (Debian 12: 3.11.2), so these are shipped too (pip there picks what it needs).
    """
    names: set[str] = set()
    for wheel in dest.glob("*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            meta = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
            text = zf.read(meta).decode("utf-8", "replace") if meta else ""
        for name, marker in _REQUIRES.findall(text):
            if "python_" in marker and "extra" not in marker and "platform" not in marker:
                names.add(name.lower())
    have = {w.name.split("-")[0].lower().replace("_", "-") for w in dest.glob("*.whl")}
    return {n for n in names if n.replace("_", "-") not in have}


def cache_root() -> Path:
    """`TURNKIT_WHEEL_CACHE`, else `$XDG_CACHE_HOME/turnkit/wheels` (default ~/.cache/turnkit/wheels)."""
    if env := os.environ.get("TURNKIT_WHEEL_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "turnkit" / "wheels"


def requires(wheel: Path) -> list[str]:
    """The wheel's `Requires-Dist` lines (what its dependency download depends on)."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
        text = zf.read(meta).decode("utf-8", "replace") if meta else ""
    return sorted(ln for ln in text.splitlines() if ln.startswith("Requires-Dist:"))


def dependencies_key(pins: str, wheel: Path) -> str:
    """Names the cached dependency wheels: the pins, turnkit's requirements, this Python and platform."""
    parts = [pins, *requires(wheel), sys.version, sysconfig.get_platform()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def dependencies(wheel: Path, pins: str, cache: Path, progress: Callable[[str], None]) -> Path:
    """The directory of `wheel`'s dependency wheels at the `pins` versions, downloaded once per key.

    Downloading resolves ~35 wheels (about half a minute); the result only changes with the inputs
    of its key, so it is kept like pip's own cache, built in a temp dir and renamed.
    """
    target = cache / f"deps-{dependencies_key(pins, wheel)}"
    if (target / ".complete").exists():
        progress(f"wheelhouse: dependency wheels unchanged, reusing {target}")
        return target
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache))
    try:
        constraints_file = work / "constraints.txt"
        constraints_file.write_text(pins)
        wheels = work / "wheels"
        _pip(
            ["download", "-q", "--only-binary=:all:", "-c", str(constraints_file), "-d", str(wheels), str(wheel)],
            "downloading the dependencies",
        )
        gated = sorted(version_gated(wheels))
        if gated:
            _pip(["download", "-q", "--only-binary=:all:", "-c", str(constraints_file), "-d", str(wheels), *gated],
                 "downloading version-gated dependencies")  # fmt: skip
        for own in wheels.glob("turnkit-*.whl"):
            own.unlink()
        (wheels / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)  # a half-made one from a killed run (no .complete)
        os.replace(wheels, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def turnkit_wheel(dest: Path) -> Path:
    """Build turnkit's own wheel from its source tree into `dest`; return its path."""
    src = source_tree()
    _pip(["wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dest), str(src)], "building turnkit's wheel")
    wheel = next(dest.glob(f"turnkit-{__version__}-*.whl"), None)
    if wheel is None:
        raise WheelhouseError(f"wheelhouse: no turnkit-{__version__} wheel was built")
    return wheel


def build(dest: Path, progress: Callable[[str], None], cache: Path | None = None) -> Path:
    """Fill `dest` (emptied first) with turnkit's wheel and the wheels of its runtime dependencies."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    progress(f"building the wheelhouse (turnkit and its dependencies, for every host) in {dest}")
    wheel = turnkit_wheel(dest)
    deps = dependencies(wheel, constraints(), cache or cache_root(), progress)
    for dep in deps.glob("*.whl"):
        shutil.copy2(dep, dest / dep.name)
    return dest


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "", "", 0o644
    return info


def archive(house: Path) -> Path:
    """`<house>.tar`: the wheelhouse as one file, byte-identical for identical wheels.

    Ansible copies one file in one round trip (a directory costs a checksum round trip per wheel)
    and reports `changed` only when a wheel changed, which is what triggers a reinstall there.
    """
    target = house.with_name(house.name + ".tar")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for wheel in sorted(house.glob("*.whl")):
            tar.add(wheel, arcname=wheel.name, recursive=False, filter=_normalized)
    atomic_write(target, raw.getvalue(), mode=0o644)
    return target
