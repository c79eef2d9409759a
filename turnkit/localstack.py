"""The `local` region: coturn per node and the signaling service as plain processes on this machine.

Everything lives under `<state_dir>/<region>/`: rendered configs, a private CA, pidfiles and
logs. No systemd and no root (with ports ≥ 1024). Three steps, each explicit:

1. `materialise` makes what the services read and nobody else would: the keyring (if absent),
   the private CA and certificate (renewed near expiry) and the HS256 secret.
2. `describe_services` says, without touching anything, what runs: argv, environment, ports and
   the configs to write. `plan` and `up` both use it.
3. `up` writes the configs and lets `turnkit.supervisor` converge the processes (coturn nodes
   restart one at a time so the other nodes keep serving).

Usage metering runs here too (`turnkit.localmeter`): per node a statsdb Redis and `turnkit meter
run`, coturn rendered with its `redis-statsdb` line, and the central store the meters ship to.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets as _random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from turnkit import clock, drain, health, keyring, localmeter, pki, render, resources, secretdb, supervisor
from turnkit.config import Config
from turnkit.coturn import target_version
from turnkit.fsutil import atomic_write
from turnkit.nodes import Node
from turnkit.progress import Progress
from turnkit.supervisor import Listen, Outcome, Service

CERT_DAYS = 90
CERT_RENEW_DAYS = 14
SIGNALING = "signaling"


def coturn_name(node: Node) -> str:
    """The supervised service name of a node's coturn (`coturn-turn-1`)."""
    return f"coturn-{node.name}"


@dataclass(frozen=True)
class Layout(supervisor.Layout):
    """Where the local region keeps its files (pidfiles and logs as the supervisor lays them out)."""

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def cert_files(self) -> pki.CertFiles:
        return pki.CertFiles(self.certs / "ca.pem", self.certs / "fullchain.pem", self.certs / "privkey.pem")

    @property
    def jwt_secret(self) -> Path:
        return self.root / "jwt.secret"

    def userdb(self, node: Node) -> Path:
        return self.coturn_dir(node) / "turndb.sqlite"

    def coturn_dir(self, node: Node) -> Path:
        return self.root / "coturn" / node.name

    @property
    def meter(self) -> localmeter.Paths:
        return localmeter.Paths(self.root / "meter")


def layout(cfg: Config, region: str) -> Layout:
    return Layout(cfg.state_path / region)


def ca_file(cfg: Config, region: str) -> Path:
    """The private CA that signed the local region's TLS certificate (for `turnkit probe --ca-file`)."""
    return layout(cfg, region).cert_files.ca


# -- 1. materialise -------------------------------------------------------------------------


@dataclass(frozen=True)
class Materials:
    """What `materialise` made or found: the accepted TURN secrets, the HS256 JWT secret, the meter keys."""

    secrets: list[str]
    jwt: str = field(repr=False)
    meter: localmeter.Keys = field(default_factory=lambda: localmeter.Keys(""))

    @classmethod
    def placeholder(cls) -> Materials:
        """For planning: describes the same services without reading or creating any secret."""
        return cls([], "")


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
    files = lay.cert_files
    # 127.0.0.1: the central usage store is reached there over TLS.
    names = list(dict.fromkeys(["localhost", "127.0.0.1", *(n.hostname for n in nodes)]))
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


def materialise(cfg: Config, lay: Layout, nodes: Sequence[Node], now: int, progress: Progress) -> Materials:
    """Create the keyring, the certificate and the JWT secret where missing (or near expiry)."""
    ring = ensure_keyring(cfg, now, progress)
    ensure_certs(lay, nodes, dt.datetime.fromtimestamp(now, dt.UTC), progress)
    for node in nodes:
        # coturn reads the accepted secrets from this table per new session: no restart, and not
        # a service input (a change must not restart coturn and drop its live relays).
        secretdb.sync(lay.userdb(node), cfg.project.effective_realm, ring.accepted)
    # Sorted, not primary-first: promoting a secret then changes no coturn config (no restart).
    return Materials(ring.accepted, jwt_secret(cfg, lay), localmeter.load_keys(lay.meter))


# -- 2. describe ------------------------------------------------------------------------------


def turnkit_argv() -> list[str]:
    """How to run this same turnkit (the venv's interpreter, not whatever is on PATH)."""
    return [sys.executable, "-m", "turnkit"]


def node_files(cfg: Config, lay: Layout, node: Node, index: int, made: Materials) -> dict[str, render.Rendered]:
    """The node's files from the shared templates, with local paths and the statsdb block on."""
    workdir = lay.coturn_dir(node)
    certs = lay.cert_files
    overrides = {
        "coturn_pidfile": str(workdir / "turnserver.pid"),
        "coturn_userdb": str(lay.userdb(node)),
        "coturn_log_file": str(lay.logfile(f"{coturn_name(node)}-turnserver")),
        "coturn_cert_file": str(certs.cert),
        "coturn_pkey_file": str(certs.key),
        **localmeter.node_overrides(cfg, made.meter, node, index),
    }
    env = render.environment(resources.template_dir())
    return render.render_node(env, cfg, node, made.secrets, target_version(cfg), overrides)


def coturn_service(cfg: Config, lay: Layout, node: Node, files: dict[str, render.Rendered]) -> Service:
    conf = lay.coturn_dir(node) / "turnserver.conf"
    certs = lay.cert_files
    host = node.listen_ip or "127.0.0.1"
    ports = cfg.ports
    return Service(
        name=coturn_name(node),
        argv=("turnserver", "-c", str(conf)),
        env={},
        listens=(
            Listen(host, ports.listening, "tcp", "ports.listening"),
            Listen(host, ports.listening, "udp", "ports.listening"),
            Listen(host, ports.tls, "tcp", "ports.tls"),
        ),
        inputs=(certs.cert,),
        files={conf: files[f"{node.name}/turnserver.conf"].content},
        detail=f"turnserver on {node.hostname}:{ports.listening}/udp+tcp, {ports.tls}/tls",
    )


def signaling_ports(cfg: Config) -> list[int]:
    """One instance per `signaling.instances` when they share rooms through Redis; without
    `signaling.redis_url` rooms live in one process, so the local region runs one."""
    ports = render.signaling_ports(cfg)
    return ports if cfg.signaling.redis_url else ports[:1]


def signaling_name(cfg: Config, port: int) -> str:
    """`signaling` for the first instance (the demo page's port), `signaling-<port>` for the others."""
    return SIGNALING if port == cfg.signaling.port else f"{SIGNALING}-{port}"


def signaling_service(cfg: Config, lay: Layout, made: Materials, port: int) -> Service:
    host = cfg.signaling.host
    env = {
        cfg.signaling.jwt.secret_env: made.jwt,
        keyring.ENV_VAR: str(cfg.secrets_path),
        # The quota gate reads the central usage store (read-only user).
        **localmeter.reader_env(cfg, made.meter, lay.cert_files.ca),
    }
    argv = (*turnkit_argv(), "signaling", "serve", "--host", host, "--port", str(port), "--config", str(cfg.path))
    reach = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    return Service(
        name=signaling_name(cfg, port),
        argv=argv,
        env=env,
        listens=(Listen(host, port, "tcp", "signaling.port"),),
        # Not the keyring: the service re-reads it on change, so a promote needs no restart
        # (a restart would drop the calls it is carrying).
        inputs=(cfg.path,),
        detail=f"turnkit signaling on http://{host}:{port}",
        # Rolling: the next instance restarts only once this one answers /readyz.
        ready_url=f"http://{reach}:{port}/readyz",
    )


def describe_services(cfg: Config, lay: Layout, nodes: Sequence[Node], made: Materials) -> list[Service]:
    """Everything the local region runs, in start order: the central usage store, then per node its
    statsdb, coturn and meter, then signaling. Reads templates, writes nothing."""
    ca = lay.cert_files.ca
    out = [localmeter.central_service(cfg, lay.meter, made.meter, nodes, lay.cert_files)]
    for index, node in enumerate(nodes):
        files = node_files(cfg, lay, node, index, made)
        statsdb_conf = files[f"{node.name}/redis/redis-turnkit-statsdb.conf"].content
        out += [
            localmeter.statsdb_service(cfg, lay.meter, node, index, statsdb_conf),
            coturn_service(cfg, lay, node, files),
            localmeter.meter_service(cfg, lay.meter, made.meter, node, index, ca, turnkit_argv()),
        ]
    return [*out, *(signaling_service(cfg, lay, made, port) for port in signaling_ports(cfg))]


# -- 3. run -----------------------------------------------------------------------------------

#: Does this node pass the probe now? (After its coturn restarted, before it is undrained.)
NodeCheck = Callable[[Node], bool]


def drained_restart(
    cfg: Config, node: Node, index: int, keys: localmeter.Keys, check: NodeCheck, progress: Progress
) -> supervisor.Around:
    """A coturn restart that drains the node first (issue 12): mark it draining (signaling stops
    handing it out), wait until its statsdb shows no live allocation or `[coturn] drain_timeout`
    passed, restart, probe, and undrain only when the probe passes."""
    statsdb = drain.StatsDb(localmeter.statsdb_url(cfg, index), keys.statsdb(node))
    realm, name, timeout = cfg.project.effective_realm, health.key(node), cfg.coturn.drain_timeout

    def around(service: Service, restart: Callable[[], None]) -> None:
        statsdb.count(realm)  # an unreadable statsdb fails here, before anything is marked
        progress(f"{name}: draining before its coturn restart (up to {timeout:g} s)")
        report = drain.drain(
            cfg, node, lambda: statsdb.count(realm), timeout, clock.now(),
            progress=lambda live: progress(f"waiting: {live} live allocation(s) on {name}"),
        )  # fmt: skip
        if not report.drained:
            progress(f"{name}: {report.live} allocation(s) still live after {timeout:g} s; restarting anyway")
        restart()
        if check(node):
            drain.mark(cfg, node, False, clock.now())
            progress(f"{name}: probe passed after the restart; back in service")
        else:
            progress(f"{name}: probe failed after the restart; left draining (`turnkit undrain` once fixed)")

    return around


def up(
    cfg: Config, region: str, nodes: Sequence[Node], now: int, progress: Progress, check: NodeCheck
) -> dict[str, Outcome]:
    """Bring every service to its current config, one at a time (a rolling restart; a coturn
    restart drains its node first and undrains it after `check` passes)."""
    lay = layout(cfg, region)
    made = materialise(cfg, lay, nodes, now, progress)
    services = describe_services(cfg, lay, nodes, made)
    for service in services:
        service.write_files()
    localmeter.write_usage_env(lay.meter, localmeter.reader_env(cfg, made.meter, lay.cert_files.ca))
    around = {coturn_name(n): drained_restart(cfg, n, i, made.meter, check, progress) for i, n in enumerate(nodes)}
    return supervisor.converge(lay, services, progress, around)


def down(cfg: Config, region: str, progress: Progress) -> list[str]:
    """Stop every service of the region (signaling first) and remove their pidfiles."""
    return supervisor.stop_all(layout(cfg, region), progress, first=SIGNALING)


def status(cfg: Config, region: str) -> dict[str, int | None]:
    """Service name → pid when running."""
    return supervisor.pids(layout(cfg, region))
