"""A small process supervisor: detached processes with pidfiles, checked through /proc, restarted on change.

Nothing here knows what runs: a `Service` is a name, an argv, an environment, the sockets it
must own and the files it is started from. `converge` brings a set of services to their
current description one at a time (a changed one is restarted, an unchanged one that still
serves is kept), so the others keep serving during a rolling restart.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from turnkit.errors import DaemonError, ExitCode, TurnkitError
from turnkit.fsutil import atomic_write
from turnkit.progress import Progress

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class Outcome(StrEnum):
    """What `ensure` did to a service."""

    STARTED = "started"
    RESTARTED = "restarted"
    KEPT = "kept"


class PortInUse(TurnkitError):
    """A port a service needs is taken by another program."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class Listen:
    """A socket a service must own: where, which protocol, and which config key set it."""

    host: str
    port: int
    proto: str  # "tcp" | "udp"
    key: str


@dataclass(frozen=True)
class Service:
    """One supervised process and how to tell whether it is up to date.

    `files` are written (when changed) before the process starts and are part of its
    fingerprint; `inputs` are other files it reads whose change means a restart.
    """

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)
    listens: tuple[Listen, ...]
    inputs: tuple[Path, ...] = ()
    files: Mapping[Path, str] = field(default_factory=dict, repr=False)
    detail: str = ""
    #: An HTTP URL that answers 200 once the service is ready (the next one of a rolling
    #: restart only starts then); None: ready when its ports answer.
    ready_url: str | None = None

    def fingerprint(self) -> str:
        """Hash of everything that should trigger a restart when it changes (secrets included, hashed)."""
        h = hashlib.sha256()
        h.update("\0".join(self.argv).encode())
        for key in sorted(self.env):
            h.update(f"\0{key}={self.env[key]}".encode())
        for path in sorted(self.files):
            h.update(f"\0{path}\0".encode() + self.files[path].encode())
        for path in self.inputs:
            h.update(b"\0" + path.read_bytes())
        return h.hexdigest()

    def write_files(self) -> None:
        """Materialise the service's files (0600: they may hold secrets); unchanged files are left alone."""
        for path, text in self.files.items():
            if not path.exists() or path.read_text() != text:
                atomic_write(path, text, mode=0o600)


#: Runs a restart of a service its own way: gets the service and the plain restart to call
#: (e.g. take a TURN node out of service first, and put it back after a passing probe).
Around = Callable[["Service", Callable[[], None]], None]


def plain(service: Service, restart: Callable[[], None]) -> None:
    restart()


@dataclass(frozen=True)
class Running:
    """What the pidfile says about a started service."""

    name: str
    pid: int
    fingerprint: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Layout:
    """Where supervised processes keep their pidfiles (`run/`) and logs (`log/`)."""

    root: Path

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "log"

    def pidfile(self, name: str) -> Path:
        return self.run / f"{name}.json"

    def logfile(self, name: str) -> Path:
        return self.logs / f"{name}.log"


# -- process table ---------------------------------------------------------------------------


def _state(stat_path: Path) -> str | None:
    try:
        return stat_path.read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """True while any thread of the process runs; a zombie (exited, not yet reaped) counts as gone.

    A multi-threaded process whose main thread exited first shows `Z` while its other threads
    still run and hold its sockets, so every task is looked at.
    """
    state = _state(Path(f"/proc/{pid}/stat"))
    if state is None:
        return False
    if state != "Z":
        return True
    tasks = Path(f"/proc/{pid}/task")
    with contextlib.suppress(OSError):
        return any(_state(t / "stat") not in (None, "Z") for t in tasks.iterdir())
    return False


def _cmdline(pid: int) -> tuple[str, ...]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ()
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def read_pidfile(path: Path) -> Running | None:
    """The recorded process, if it is still the same program (pids get reused)."""
    try:
        doc = json.loads(path.read_text())
        rec = Running(doc["name"], int(doc["pid"]), str(doc["fingerprint"]), tuple(doc["argv"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rec if _alive(rec.pid) else None


def _matches(rec: Running) -> bool:
    """The pid still runs our command (argv[0] may have been resolved through PATH)."""
    cmd = _cmdline(rec.pid)
    return bool(cmd) and cmd[1:] == rec.argv[1:]


def running(lay: Layout, name: str) -> Running | None:
    rec = read_pidfile(lay.pidfile(name))
    return rec if rec is not None and _matches(rec) else None


#: bind() errno → why the port cannot be used, as the operator reads it.
_BIND_ERRORS: dict[int, str] = {
    errno.EADDRINUSE: "is already in use",
    errno.EACCES: "needs root (ports below 1024)",
    errno.EADDRNOTAVAIL: "cannot be bound: address not available",
}


def _bind_error(item: Listen) -> str | None:
    """None when the port can be bound now, else why not."""
    kind = socket.SOCK_STREAM if item.proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((item.host, item.port))
        except OSError as exc:
            return _BIND_ERRORS.get(exc.errno or 0, f"cannot be bound: {exc.strerror}")
    return None


def _probe_socket(item: Listen) -> bool:
    return _bind_error(item) is None


def check_ports(service: Service) -> None:
    for item in service.listens:
        why = _bind_error(item)
        if why is not None:
            raise PortInUse(f"{item.key}: port {item.port}/{item.proto} on {item.host} {why}")


def wait_ports_free(service: Service, timeout: float = STOP_TIMEOUT) -> None:
    """After a stop: the exiting process's last threads may still hold its sockets for a moment."""
    deadline = time.monotonic() + timeout
    while not all(_probe_socket(item) for item in service.listens):
        if time.monotonic() > deadline:
            check_ports(service)
        time.sleep(0.05)


def _serving(service: Service) -> bool:
    for item in service.listens:
        if item.proto != "tcp":
            continue
        try:
            with socket.create_connection((item.host, item.port), timeout=0.5):
                pass
        except OSError:
            return False
    return True


def _ready(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without turnkit's own settings, plus the service's."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("TURNKIT_")}, **extra}


def start(lay: Layout, service: Service, progress: Progress) -> Running:
    """Start detached (own session), record the pidfile, wait until every TCP port answers."""
    check_ports(service)
    lay.logs.mkdir(parents=True, exist_ok=True)
    # Owner only: daemons may log what they were configured with (coturn logs its statsdb password).
    os.chmod(lay.logs, 0o700)
    logfile = lay.logfile(service.name)
    with logfile.open("ab") as out:
        try:
            proc = subprocess.Popen(
                list(service.argv),
                env=_environment(service.env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise DaemonError(f"{service.name}: cannot run `{service.argv[0]}`: {exc.strerror}") from None
    rec = Running(service.name, proc.pid, service.fingerprint(), service.argv)
    atomic_write(lay.pidfile(service.name), json.dumps(rec.__dict__ | {"argv": list(rec.argv)}) + "\n")
    deadline = time.monotonic() + START_TIMEOUT
    while not _serving(service):
        if proc.poll() is not None:
            lay.pidfile(service.name).unlink(missing_ok=True)
            raise DaemonError(f"{service.name} exited at start with status {proc.returncode} (see {logfile})")
        if time.monotonic() > deadline:
            stop(lay, service.name, progress)
            raise DaemonError(f"{service.name} did not open its ports within {START_TIMEOUT:.0f}s (see {logfile})")
        time.sleep(0.05)
    progress(f"started {service.name} (pid {proc.pid})")
    if service.ready_url is not None:
        while not _ready(service.ready_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise DaemonError(f"{service.name} did not become ready at {service.ready_url} (see {logfile})")
            time.sleep(0.1)
        progress(f"{service.name} is ready")
    return rec


def stop(lay: Layout, name: str, progress: Progress, timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM the service's process group, SIGKILL after `timeout`; remove the pidfile."""
    rec = running(lay, name)
    if rec is None:
        lay.pidfile(name).unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(rec.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(rec.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(rec.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while _alive(rec.pid):
            if time.monotonic() > deadline:
                raise DaemonError(f"{name} (pid {rec.pid}) survived SIGKILL for {timeout:.0f}s")
            time.sleep(0.05)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(rec.pid, os.WNOHANG)
    lay.pidfile(name).unlink(missing_ok=True)
    progress(f"stopped {name} (pid {rec.pid})")
    return True


def ensure(lay: Layout, service: Service, progress: Progress, around: Around = plain) -> Outcome:
    """Start, restart (through `around`) or keep one service."""
    rec = running(lay, service.name)
    if rec is not None and rec.fingerprint == service.fingerprint() and _serving(service):
        return Outcome.KEPT
    if rec is not None:

        def restart() -> None:
            stop(lay, service.name, progress)
            wait_ports_free(service)
            start(lay, service, progress)

        around(service, restart)
        return Outcome.RESTARTED
    lay.pidfile(service.name).unlink(missing_ok=True)
    start(lay, service, progress)
    return Outcome.STARTED


def known(lay: Layout, first: str = "") -> list[str]:
    """Services with a pidfile, in stop order: names starting with `first`, then the rest by name."""
    names = [p.stem for p in lay.run.glob("*.json")] if lay.run.is_dir() else []
    return sorted(names, key=lambda n: (not (first and n.startswith(first)), n))


def converge(
    lay: Layout, services: Sequence[Service], progress: Progress, around: Mapping[str, Around] | None = None
) -> dict[str, Outcome]:
    """Stop services no longer wanted, report every busy port before anything starts, then ensure
    each service in order (one at a time: a rolling restart). `around[name]` runs that service's
    restart (a fresh start or a kept service does not go through it)."""
    wrappers = around or {}
    for stale in set(known(lay)) - {s.name for s in services}:
        stop(lay, stale, progress)
    for service in services:
        if running(lay, service.name) is None:
            check_ports(service)
    return {s.name: ensure(lay, s, progress, wrappers.get(s.name, plain)) for s in services}


def stop_all(lay: Layout, progress: Progress, first: str = "") -> list[str]:
    """Stop every service with a pidfile (those named `first…` first); returns the ones that ran."""
    return [name for name in known(lay, first) if stop(lay, name, progress)]


def pids(lay: Layout) -> dict[str, int | None]:
    """Service name → pid while it runs."""
    out: dict[str, int | None] = {}
    for name in known(lay):
        rec = running(lay, name)
        out[name] = rec.pid if rec else None
    return out
