"""Detached helper processes of a lab on this machine (package server, pebble, challtestsrv).

Each runs in its own session with a pidfile in the lab directory; a pid counts as ours only
while its command line still names the program, so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from turnkit.lab.sh import LabError


@dataclass(frozen=True)
class Daemon:
    """A named process: argv, environment, and the address it listens on once ready."""

    name: str
    argv: Sequence[str]
    ready: tuple[str, int]
    env: Mapping[str, str] = field(default_factory=dict)

    def pidfile(self, d: Path) -> Path:
        return d / f"{self.name}.pid"

    def pid(self, d: Path) -> int | None:
        return running_pid(self.pidfile(d), Path(self.argv[0]).name)

    def start(self, d: Path, timeout: float = 20) -> int:
        """Start unless running; wait until `ready` accepts TCP connections."""
        pid = self.pid(d)
        if pid is not None:
            return pid
        with contextlib.suppress(OSError):  # someone else's listener would answer our readiness check
            socket.create_connection(self.ready, timeout=0.5).close()
            host, port = self.ready
            raise LabError(f"lab: {self.name}: {host}:{port} is already in use (a helper left by an earlier lab?)")
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"{self.name}.log", "ab") as out:
            proc = subprocess.Popen(
                list(self.argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                env={**os.environ, **self.env}, cwd=d,
            )  # fmt: skip
        self.pidfile(d).write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LabError(f"lab: {self.name} exited at start (see {d / self.name}.log)")
            with contextlib.suppress(OSError):
                socket.create_connection(self.ready, timeout=0.5).close()
                if proc.poll() is None:
                    return proc.pid
            time.sleep(0.1)
        raise LabError(f"lab: {self.name} did not listen on {self.ready[0]}:{self.ready[1]} within {timeout:g}s")


def running_pid(pidfile: Path, program: str) -> int | None:
    """The recorded pid while that process still runs `program`."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if program.encode() in cmdline else None


def stop_all(d: Path, names: Sequence[str], programs: Mapping[str, str]) -> list[str]:
    """Stop the named daemons recorded in `d` (TERM, then KILL after 3 s)."""
    stopped = []
    for name in names:
        pidfile = d / f"{name}.pid"
        pid = running_pid(pidfile, programs[name])
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            for _ in range(30):
                if running_pid(pidfile, programs[name]) is None:  # gone, or a zombie (empty cmdline)
                    break
                time.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            stopped.append(name)
        pidfile.unlink(missing_ok=True)
    return stopped


def in_dir(d: Path) -> list[int]:
    """Pids of processes working in `d`, also after `d` was deleted: every helper starts there, so this
    finds a lab's helpers even when a pidfile was lost or overwritten."""
    target = str(d.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "cwd").removesuffix(" (deleted)") == target:
                    found.append(int(entry.name))
    return found


def stop_in_dir(d: Path) -> list[int]:
    """Stop (TERM, then KILL after 3 s) every process `in_dir(d)`; return their pids."""
    pids = in_dir(d)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for _ in range(30):
        if not set(pids) & set(in_dir(d)):
            break
        time.sleep(0.1)
    for pid in set(pids) & set(in_dir(d)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids
