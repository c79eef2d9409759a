"""Child processes for benchmarks: pinned to a core, with the open-files limit raised, always killed at the end."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SERVER_CORE = 0
CLIENT_CORE = 1


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (TURN listens on both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port on 127.0.0.1")


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def core(preferred: int) -> int | None:
    """`preferred` if this machine has it, else None (no pinning on a one-core machine)."""
    available = cores()
    return preferred if len(available) > 1 and preferred in available else None


def raise_nofile() -> int:
    """Soft open-files limit up to the hard limit (children inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Procs:
    """Every child a benchmark starts; `stop_all` (called from `finally`) ends them, newest first."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.children: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        pin: int | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdout_pipe: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` in its own session, pinned to core `pin`, output to `<logdir>/<name>.log` (or a pipe)."""
        self.logdir.mkdir(parents=True, exist_ok=True)
        logfile = self.logdir / f"{name}.log"
        full = [*argv] if pin is None else ["taskset", "-c", str(pin), *argv]
        with logfile.open("ab") as out:
            proc = subprocess.Popen(
                full,
                stdout=subprocess.PIPE if stdout_pipe else out,
                stderr=out,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        self.children.append(proc)
        log.debug("started %s pid %d: %s", name, proc.pid, " ".join(full))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        """SIGTERM the child's process group, SIGKILL after `timeout`."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc in self.children:
            self.children.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.children)):
            self.stop(proc)

    def log_tail(self, name: str, chars: int = 2000) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@contextlib.contextmanager
def managed(logdir: Path) -> Iterator[Procs]:
    procs = Procs(logdir)
    try:
        yield procs
    finally:
        procs.stop_all()


def rss_kib(pid: int) -> int:
    """Resident set size of one process (VmRSS from /proc), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU time of this process's finished children (a load tool run to completion)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Poll `url` until it answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}")
        with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url}: no 200 within {timeout:g}s")


def wait_tcp(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"port {port}: process exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {host}:{port} within {timeout:g}s")


def run(
    argv: Sequence[str], pin: int | None = None, timeout: float = 120.0, env: Mapping[str, str] | None = None
) -> str:
    """Run a short-lived load tool to completion; its stdout, or an error naming the tool and its stderr."""
    full = [*argv] if pin is None else ["taskset", "-c", str(pin), *argv]
    done = subprocess.run(
        full, capture_output=True, timeout=timeout, env={**os.environ, **(env or {})}, start_new_session=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.decode(errors='replace')[-1500:]}")
    return done.stdout.decode(errors="replace")


@dataclass(frozen=True)
class Windowed:
    """A load tool's run: its stdout, and the CPU seconds the watched processes used in its measured window."""

    stdout: str
    cpu_seconds: float


def run_windowed(
    argv: Sequence[str],
    watched: Sequence[int],
    pin: int | None = None,
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
) -> Windowed:
    """Run a load tool that prints `{"event":"start"}` and `{"event":"stop"}` lines around its measured window.

    utime+stime of every process in `watched` (from /proc) is read when each line arrives, so the figure covers
    the window only: not connection setup, warm-up or teardown.
    """
    full = [*argv] if pin is None else ["taskset", "-c", str(pin), *argv]
    proc = subprocess.Popen(
        full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    marks: dict[str, float] = {}
    lines: list[bytes] = []
    try:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            lines.append(line)
            for event in ("start", "stop"):
                if line.strip() == b'{"event":"%s"}' % event.encode():
                    marks[event] = sum(cpu_seconds(pid) for pid in watched)
        err = proc.stderr.read().decode(errors="replace")
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    if code != 0:
        raise RuntimeError(f"{argv[0]} exited {code}: {err[-1500:]}")
    if set(marks) != {"start", "stop"}:
        raise RuntimeError(f"{argv[0]} printed no start/stop window: {b''.join(lines)[-500:]!r}")
    return Windowed(b"".join(lines).decode(errors="replace"), marks["stop"] - marks["start"])
