"""Run the lab's system commands: argv lists only, one-line errors naming the command."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence

from turnkit.errors import TurnkitError


class LabError(TurnkitError):
    """A lab step failed (missing tool, no root, a command that did not work)."""


def need(*tools: str) -> None:
    """Fail clearly when a tool the lab needs is not installed (never a silent skip)."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise LabError(
            f"lab: missing tool(s) {', '.join(missing)} (run `make setup`: systemd-container, nftables, dpkg-dev)"
        )


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
    input_: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv; with `check`, a non-zero exit raises LabError with the first stderr line."""
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, env=dict(env) if env else None, input=input_
        )
    except FileNotFoundError:
        raise LabError(f"lab: `{argv[0]}` not found") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"lab: `{' '.join(argv[:3])}` did not finish within {timeout:g}s") from None
    if check and proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        detail = lines[-1] if lines else f"exit {proc.returncode}"
        raise LabError(f"lab: `{' '.join(argv[:4])}` failed: {detail}")
    return proc
