"""The wheelhouse `turnkit deploy` ships to the signaling host: turnkit's wheel and its dependencies.

Signaling hosts never need PyPI: they install with `pip install --no-index --find-links`. The
dependency versions are exactly the controller's (its `pip freeze` is the constraints file), and
the wheels match the controller's Python and platform (Debian 12's python3.11 on both ends).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from turnkit import __version__
from turnkit.errors import TurnkitError


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


def build(dest: Path, progress: Callable[[str], None]) -> Path:
    """Fill `dest` (emptied first) with turnkit's wheel and the wheels of its runtime dependencies."""
    src = source_tree()
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    progress(f"building the wheelhouse for the signaling host in {dest}")
    _pip(["wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dest), str(src)], "building turnkit's wheel")
    wheel = next(dest.glob(f"turnkit-{__version__}-*.whl"), None)
    if wheel is None:
        raise WheelhouseError(f"wheelhouse: no turnkit-{__version__} wheel was built")
    pins = dest.parent / f".{dest.name}-constraints.txt"
    pins.write_text(constraints())
    try:
        _pip(
            ["download", "-q", "--only-binary=:all:", "-c", str(pins), "-d", str(dest), str(wheel)],
            "downloading the dependencies",
        )
        gated = sorted(version_gated(dest))
        if gated:
            _pip(["download", "-q", "--only-binary=:all:", "-c", str(pins), "-d", str(dest), *gated],
                 "downloading version-gated dependencies")  # fmt: skip
    finally:
        pins.unlink(missing_ok=True)
    return dest
