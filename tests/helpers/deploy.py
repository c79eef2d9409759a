"""Deploy test helpers."""

from __future__ import annotations

from pathlib import Path


def alive(pid: int) -> bool:
    """Any thread of the process still runs (an exited, unreaped zombie does not count)."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        return False
    for task in tasks.iterdir():
        try:
            if (task / "stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
                return True
        except OSError:
            continue
    return False
