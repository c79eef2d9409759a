"""The lab's names on this machine: a marked block in /etc/hosts, so nothing asks outside DNS.

The controller (probes, Ansible, a browser on this machine) resolves `turn-N.<region>.<domain>`
and `server_name` from this block; the hosts themselves ask challtestsrv on the bridge. The file
is rewritten in place (it may be a bind mount), under a lock, keeping every other line.
"""

from __future__ import annotations

import fcntl
from collections.abc import Mapping
from pathlib import Path

HOSTS = Path("/etc/hosts")


def markers(lab: str) -> tuple[str, str]:
    return f"# turnkit lab {lab} begin", f"# turnkit lab {lab} end"


def without_block(text: str, lab: str) -> str:
    """`text` with the lab's block removed (pure)."""
    begin, end = markers(lab)
    out, inside = [], False
    for line in text.splitlines():
        if line == begin:
            inside = True
        elif line == end and inside:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out) + "\n" if out else ""


def with_block(text: str, lab: str, names: Mapping[str, str]) -> str:
    """`text` with the lab's block set to `names` (FQDN → address), at the end (pure)."""
    begin, end = markers(lab)
    block = [begin, *(f"{ip} {name}" for name, ip in names.items()), end]
    return without_block(text, lab) + "\n".join(block) + "\n"


def _rewrite(change: str, lab: str, names: Mapping[str, str] | None, path: Path) -> None:
    with open(path, "r+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        text = fh.read()
        new = with_block(text, lab, names or {}) if change == "set" else without_block(text, lab)
        if new != text:
            fh.seek(0)
            fh.write(new)
            fh.truncate()


def publish(lab: str, names: Mapping[str, str], path: Path = HOSTS) -> None:
    _rewrite("set", lab, names, path)


def withdraw(lab: str, path: Path = HOSTS) -> bool:
    """Remove the lab's block; True when there was one."""
    had = markers(lab)[0] in path.read_text()
    _rewrite("drop", lab, None, path)
    return had
