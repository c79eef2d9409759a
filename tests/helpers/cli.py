"""The installed CLI as a user runs it, for every test that drives `turnkit` end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_cli(
    *args: str, cwd: Path, stdin: str | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m turnkit ARGS` in `cwd`, output captured, never raising on a non-zero exit.

    `stdin` is what a user types (no input: an empty stdin, so a prompt can never wait); `env`
    replaces this process's environment (AWS settings come from it by default).
    """
    return subprocess.run(
        [sys.executable, "-m", "turnkit", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        check=False,
        env=env,
    )


def sourced(env_file: Path) -> dict[str, str]:
    """What `set -a; . ENV_FILE` exports, read back from a real shell (the way operators use it)."""
    out = subprocess.run(
        ["sh", "-c", 'set -a; . "$1"; exec env -0', "sh", str(env_file)],
        capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"}, check=True,
    )  # fmt: skip
    pairs = (item.split("=", 1) for item in out.stdout.split("\0") if "=" in item)
    return {k: v for k, v in pairs if k not in ("PATH", "PWD", "SHLVL", "_", "OLDPWD")}
