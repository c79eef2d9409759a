"""What the benchmarks ran on: tool versions and how busy the machine was."""

from __future__ import annotations

import json
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

#: The Node packages bench/package-lock.json pins (what `npm ci` installs).
NODE_PACKAGES = ("socket.io", "socket.io-client", "ws")
LOCK = Path(__file__).with_name("package-lock.json")


def _cmd(argv: list[str], pattern: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    m = re.search(pattern, (done.stdout + done.stderr).decode(errors="replace"))
    return m.group(1) if m else "unknown"


def _pkg(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def node_versions(lock: Path = LOCK) -> dict[str, str]:
    try:
        packages = json.loads(lock.read_text())["packages"]
    except (OSError, ValueError, KeyError):
        return dict.fromkeys(NODE_PACKAGES, "unknown")
    return {name: str(packages.get(f"node_modules/{name}", {}).get("version", "missing")) for name in NODE_PACKAGES}


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "node": _cmd(["node", "--version"], r"v?([\d.]+)"),
        "coturn": _cmd(["turnserver", "--version"], r"([\d]+\.[\d]+\.[\d]+)"),
        "redis": _cmd(["redis-server", "--version"], r"v=([\d.]+)"),
        "websockets": _pkg("websockets"),
        "aiortc": _pkg("aiortc"),
        "uvloop": _pkg("uvloop"),
        **node_versions(),
    }


def pinning(server: int | None, client: int | None) -> str:
    if server is None or client is None:
        return "no core pinning (one core available)"
    return f"servers pinned to core {server}, load generators to core {client} (taskset)"


def machine_note(load_start: float, load_end: float, note: str, quick: bool, pinned: str = "") -> str:
    """A line about the machine: core pinning, load average before/after, and whether this was a smoke run."""
    parts = [pinned] if pinned else []
    parts.append(f"load average {load_start:.2f} before, {load_end:.2f} after")
    if load_start > 0.5:
        parts.append("other work was running on this machine (shared), so absolute figures are noisy")
    if quick:
        parts.append("**--quick smoke run: durations cut, figures are not measurements**")
    if note:
        parts.append(note)
    return "; ".join(parts) + "."
