"""coturn for benchmarks: turnkit renders the node's config (test ports and paths), `turnserver` runs it under Procs."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import Procs, free_port, wait_tcp
from turnkit import config, pki, render, resources, secretdb
from turnkit.nodes import Node

#: The coturn version whose config dialect the templates render (the one Debian installs here).
COTURN_VERSION = "4.6.1"
#: A `local` region; its relays may reach loopback peers (the probe's relay check echoes over 127.0.0.1).
_TOML = '[project]\ndomain = "turn.example.test"\n\n[regions.local]\nprovider = "local"\nallow_loopback_peers = true\n'


@dataclass(frozen=True)
class Coturn:
    """A running turnserver: its process, TURN ports and certificate (CA, chain, key)."""

    proc: subprocess.Popen[bytes]
    port: int
    tls_port: int
    certs: pki.CertFiles
    log: Path


def local_config(workdir: Path) -> config.Config:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "turnkit.toml"
    path.write_text(_TOML)
    return config.load(path)


def start(
    procs: Procs,
    workdir: Path,
    secrets: Sequence[str],
    extra: Mapping[str, Any] | None = None,
    certs: pki.CertFiles | None = None,
    relay_ports: tuple[int, int] = (49152, 49999),
    wrap: Sequence[str] = (),
    reach: str = "127.0.0.1",
) -> Coturn:
    """Render turn-1's turnserver.conf into `workdir` with free ports and start it; `certs` reuses a certificate.

    `wrap` prefixes the command (e.g. `ip netns exec NS`); `reach` is the address its ports are awaited on.
    """
    cfg = local_config(workdir)
    port, tls_port = free_port(), free_port()
    certs = certs or pki.make_ca_and_cert(
        workdir / "certs", ["turn.example.test", "127.0.0.1"], dt.datetime.now(dt.UTC), 30
    )
    log = workdir / "turnserver.log"
    userdb = workdir / "turndb.sqlite"
    secretdb.sync(userdb, cfg.project.effective_realm, secrets)  # coturn reads the accepted secrets from here
    overrides = {
        "coturn_userdb": str(userdb),
        "coturn_listening_port": port,
        "coturn_tls_listening_port": tls_port,
        "coturn_min_port": relay_ports[0],
        "coturn_max_port": relay_ports[1],
        "coturn_cert_file": str(certs.cert),
        "coturn_pkey_file": str(certs.key),
        "coturn_pidfile": str(workdir / "turnserver.pid"),
        "coturn_log_file": str(log),
        **(extra or {}),
    }
    node = Node("turn-1", "local", "127.0.0.1", "127.0.0.1", None)
    files = render.render_node(
        render.environment(resources.template_dir()), cfg, node, secrets, COTURN_VERSION, overrides
    )
    conf = workdir / "turnserver.conf"
    conf.write_text(files["turn-1/turnserver.conf"].content)
    proc = procs.start(f"coturn-{port}", [*wrap, "turnserver", "-c", str(conf)])
    try:
        wait_tcp(port, proc, host=reach)
        wait_tcp(tls_port, proc, host=reach)
    except RuntimeError as exc:
        text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"turnserver did not start: {exc}\n{text}") from None
    return Coturn(proc, port, tls_port, certs, log)
