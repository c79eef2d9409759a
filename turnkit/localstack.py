"""The `local` region's supervisor: coturn and the signaling service as plain processes.

Everything lives under `<state_dir>/<region>/`: rendered configs, a private CA, pidfiles and
logs. No systemd and no root (with ports ≥ 1024). `up` is idempotent: a service whose
inputs (argv, environment, config file) are unchanged and that still serves is left alone;
a changed one is restarted, coturn nodes one at a time so the other nodes keep serving.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import logging
import os
import secrets as _random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from turnkit import keyring, pki, render, resources
from turnkit.config import Config
from turnkit.coturn import target_version
from turnkit.errors import DaemonError, ExitCode, TurnkitError
from turnkit.fsutil import atomic_write
from turnkit.nodes import Node, region_nodes

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CERT_DAYS = 90
CERT_RENEW_DAYS = 14


class PortInUse(TurnkitError):
    """A port the local region needs is taken by another program."""

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
    """One supervised process and how to tell whether it is up to date."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)
    listens: tuple[Listen, ...]
    inputs: tuple[Path, ...] = ()

    def fingerprint(self) -> str:
        """Hash of everything that should trigger a restart when it changes (secrets included, hashed)."""
        h = hashlib.sha256()
        h.update("\0".join(self.argv).encode())
        for key in sorted(self.env):
            h.update(f"\0{key}={self.env[key]}".encode())
        for path in self.inputs:
            h.update(b"\0" + path.read_bytes())
        return h.hexdigest()


@dataclass(frozen=True)
class Running:
    """What the pidfile says about a started service."""

    name: str
    pid: int
    fingerprint: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Layout:
    """Where the local region keeps its files."""

    root: Path

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "log"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def jwt_secret(self) -> Path:
        return self.root / "jwt.secret"

    def coturn_dir(self, node: Node) -> Path:
        return self.root / "coturn" / node.name

    def pidfile(self, name: str) -> Path:
        return self.run / f"{name}.json"

    def logfile(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def layout(cfg: Config, region: str) -> Layout:
    return Layout(cfg.state_path / region)


def ca_file(cfg: Config, region: str) -> Path:
    """The private CA that signed the local region's TLS certificate (for `turnkit probe --ca-file`)."""
    return layout(cfg, region).certs / "ca.pem"


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


def _environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without turnkit's own settings, plus the service's."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("TURNKIT_")}, **extra}


def start(lay: Layout, service: Service, progress: Progress) -> Running:
    """Start detached (own session), record the pidfile, wait until every TCP port answers."""
    check_ports(service)
    lay.logs.mkdir(parents=True, exist_ok=True)
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


def ensure(lay: Layout, service: Service, progress: Progress) -> str:
    """Start, restart or keep one service; returns what happened."""
    rec = running(lay, service.name)
    if rec is not None and rec.fingerprint == service.fingerprint() and _serving(service):
        return "kept"
    if rec is not None:
        stop(lay, service.name, progress)
        wait_ports_free(service)
        start(lay, service, progress)
        return "restarted"
    lay.pidfile(service.name).unlink(missing_ok=True)
    start(lay, service, progress)
    return "started"


# -- what the local region runs -------------------------------------------------------------


def jwt_secret(cfg: Config, lay: Layout) -> str:
    """The HS256 secret: from the configured env variable, else a generated 0600 file."""
    from_env = os.environ.get(cfg.signaling.jwt.secret_env)
    if from_env:
        return from_env
    if not lay.jwt_secret.exists():
        atomic_write(lay.jwt_secret, _random.token_urlsafe(32) + "\n", mode=0o600)
    return lay.jwt_secret.read_text().strip()


def ensure_keyring(cfg: Config, now: int, progress: Progress) -> keyring.Keyring:
    if not cfg.secrets_path.exists():
        keyring.save(cfg.secrets_path, keyring.init(now))
        progress(f"created secret keyring {cfg.secrets_path}")
    return keyring.load(cfg.secrets_path)


def ensure_certs(lay: Layout, nodes: Sequence[Node], now: dt.datetime, progress: Progress) -> pki.CertFiles:
    """A private CA and a cert for localhost and the node addresses; renewed when close to expiry."""
    files = pki.CertFiles(lay.certs / "ca.pem", lay.certs / "fullchain.pem", lay.certs / "privkey.pem")
    names = ["localhost", *dict.fromkeys(n.hostname for n in nodes)]
    with contextlib.suppress(OSError, ValueError):
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
            str(v) for v in san.get_values_for_type(x509.IPAddress)
        }
        fresh = cert.not_valid_after_utc - now > dt.timedelta(days=CERT_RENEW_DAYS)
        if fresh and set(names) <= have and files.key.exists() and files.ca.exists():
            return files
    progress(f"issued a local TLS certificate for {', '.join(names)}")
    return pki.make_ca_and_cert(lay.certs, names, now, CERT_DAYS)


def turnkit_argv() -> list[str]:
    """How to run this same turnkit (the venv's interpreter, not whatever is on PATH)."""
    return [sys.executable, "-m", "turnkit"]


def coturn_service(cfg: Config, lay: Layout, node: Node, secrets: Sequence[str], certs: pki.CertFiles) -> Service:
    workdir = lay.coturn_dir(node)
    conf = workdir / "turnserver.conf"
    overrides = {
        "coturn_pidfile": str(workdir / "turnserver.pid"),
        "coturn_log_file": str(lay.logfile(f"coturn-{node.name}-turnserver")),
        "coturn_cert_file": str(certs.cert),
        "coturn_pkey_file": str(certs.key),
    }
    env = render.environment(resources.template_dir())
    files = render.render_node(env, cfg, node, secrets, target_version(cfg), overrides)
    text = files[f"{node.name}/turnserver.conf"].content
    if not conf.exists() or conf.read_text() != text:
        atomic_write(conf, text, mode=0o600)
    host = node.listen_ip or "127.0.0.1"
    return Service(
        name=f"coturn-{node.name}",
        argv=("turnserver", "-c", str(conf)),
        env={},
        listens=(
            Listen(host, cfg.ports.listening, "tcp", "ports.listening"),
            Listen(host, cfg.ports.listening, "udp", "ports.listening"),
            Listen(host, cfg.ports.tls, "tcp", "ports.tls"),
        ),
        inputs=(conf, certs.cert),
    )


def signaling_service(cfg: Config, lay: Layout, jwt: str) -> Service:
    host, port = cfg.signaling.host, cfg.signaling.port
    env = {
        cfg.signaling.jwt.secret_env: jwt,
        keyring.ENV_VAR: str(cfg.secrets_path),
    }
    argv = (*turnkit_argv(), "signaling", "serve", "--host", host, "--port", str(port), "--config", str(cfg.path))
    return Service(
        name="signaling",
        argv=argv,
        env=env,
        listens=(Listen(host, port, "tcp", "signaling.port"),),
        # Not the keyring: the service re-reads it on change, so a promote needs no restart
        # (a restart would drop the calls it is carrying).
        inputs=(cfg.path,),
    )


def services(cfg: Config, region: str, now: int, progress: Progress) -> list[Service]:
    """Everything the local region runs, with configs rendered and secrets generated if absent."""
    lay = layout(cfg, region)
    nodes = region_nodes(cfg, region)
    ring = ensure_keyring(cfg, now, progress)
    certs = ensure_certs(lay, nodes, dt.datetime.fromtimestamp(now, dt.UTC), progress)
    # Sorted, not primary-first: promoting a secret then changes no coturn config (no restart).
    out = [coturn_service(cfg, lay, n, ring.accepted, certs) for n in nodes]
    out.append(signaling_service(cfg, lay, jwt_secret(cfg, lay)))
    return out


def up(cfg: Config, region: str, now: int, progress: Progress) -> dict[str, str]:
    """Bring every service to its current config, one at a time (a rolling restart for coturn)."""
    lay = layout(cfg, region)
    wanted = services(cfg, region, now, progress)
    for stale in set(known(lay)) - {s.name for s in wanted}:
        stop(lay, stale, progress)
    for service in wanted:  # every busy port is reported before anything starts
        if running(lay, service.name) is None:
            check_ports(service)
    return {s.name: ensure(lay, s, progress) for s in wanted}


def known(lay: Layout) -> list[str]:
    """Services with a pidfile, in stop order (signaling first, then coturn nodes)."""
    names = [p.stem for p in lay.run.glob("*.json")] if lay.run.is_dir() else []
    return sorted(names, key=lambda n: (not n.startswith("signaling"), n))


def down(cfg: Config, region: str, progress: Progress) -> list[str]:
    """Stop every service of the region and remove their pidfiles."""
    lay = layout(cfg, region)
    return [name for name in known(lay) if stop(lay, name, progress)]


def status(cfg: Config, region: str) -> dict[str, int | None]:
    """Service name → pid when running."""
    lay = layout(cfg, region)
    out: dict[str, int | None] = {}
    for name in known(lay):
        rec = running(lay, name)
        out[name] = rec.pid if rec else None
    return out
