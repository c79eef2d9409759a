"""Real daemons for tests: free ports, and coturn started from turnkit-rendered config."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from turnkit import config as config_mod
from turnkit import pki, render, resources, secretdb
from turnkit.nodes import Node


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free for both TCP and UDP on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        try:
            with socket.socket(socket.AF_INET, other) as s2:
                s2.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@dataclass
class Coturn:
    """A running turnserver: where it listens, its rendered config and its log."""

    proc: subprocess.Popen[bytes]
    port: int
    tls_port: int
    conf: Path
    log: Path
    pidfile: Path
    certs: pki.CertFiles

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        stop_process(self.proc)


def local_config(tmp: Path, toml: str = "", **region: Any) -> config_mod.Config:
    """A minimal config with a `local` region (loopback relays allowed unless told otherwise)."""
    loop = str(region.get("allow_loopback_peers", True)).lower()
    text = f'[project]\ndomain = "turn.example.test"\n\n[regions.local]\nprovider = "local"\nallow_loopback_peers = {loop}\n'
    path = tmp / "turnkit.toml"
    path.write_text(text + toml)
    return config_mod.load(path)


def render_coturn(
    cfg: config_mod.Config, node: Node, secrets: list[str], workdir: Path, overrides: Mapping[str, Any]
) -> Path:
    """The node's config, and its secret table (`userdb`) holding `secrets`."""
    overrides = {"coturn_userdb": str(workdir / "turndb.sqlite"), **overrides}
    secretdb.sync(Path(overrides["coturn_userdb"]), cfg.project.effective_realm, secrets)
    env = render.environment(resources.template_dir())
    files = render.render_node(env, cfg, node, secrets, "4.6.1", overrides)
    conf = workdir / "turnserver.conf"
    conf.write_text(files[f"{node.name}/turnserver.conf"].content)
    return conf


def start_coturn(
    cfg: config_mod.Config,
    secrets: list[str],
    workdir: Path,
    cert_days: int = 90,
    extra: Mapping[str, Any] | None = None,
    node: Node | None = None,
    ports: tuple[int, int] | None = None,
) -> Coturn:
    """Render the node's config with test ports/paths and start turnserver as a plain process.

    By default node `turn-1` on 127.0.0.1 with free listening and TLS ports; a region's own `node`
    and `ports` start one of several nodes sharing ports on their own loopback addresses."""
    workdir.mkdir(parents=True, exist_ok=True)
    node = node or Node("turn-1", "local", "127.0.0.1", "127.0.0.1", None)
    port, tls_port = ports or (free_port(), free_port())
    relay_min = random.randrange(20000, 60000, 100)
    certs = pki.make_ca_and_cert(
        workdir / "certs", ["turn.example.test", node.hostname], dt.datetime.now(dt.UTC), cert_days
    )
    log, pidfile = workdir / "turnserver.log", workdir / "turnserver.pid"
    overrides = {
        "coturn_listening_port": port,
        "coturn_tls_listening_port": tls_port,
        "coturn_min_port": relay_min,
        "coturn_max_port": relay_min + 99,
        "coturn_cert_file": str(certs.cert),
        "coturn_pkey_file": str(certs.key),
        "coturn_pidfile": str(pidfile),
        "coturn_log_file": str(log),
        **(extra or {}),
    }
    conf = render_coturn(cfg, node, secrets, workdir, overrides)
    proc = subprocess.Popen(
        ["turnserver", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    server = Coturn(proc, port, tls_port, conf, log, pidfile, certs)
    try:
        wait_port(port, host=node.hostname)
        wait_port(tls_port, host=node.hostname)
    except TimeoutError:
        server.stop()
        raise RuntimeError(f"turnserver did not start:\n{server.log_text()[-3000:]}") from None
    return server


@contextlib.contextmanager
def coturn_running(cfg: config_mod.Config, secrets: list[str], workdir: Path, **kw: Any) -> Iterator[Coturn]:
    server = start_coturn(cfg, secrets, workdir, **kw)
    try:
        yield server
    finally:
        server.stop()


def env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}
