"""The local region's usage metering (issue 14): what a node and the signaling host run for it.

Per node, next to its coturn:

- `statsdb-<node>`: the node's statsdb Redis on loopback, from the same template the Ansible role
  installs (`redis/turnkit-statsdb.conf.j2`), port `[meter] statsdb_port` + the node's index (all
  local nodes share 127.0.0.1, where coturn's `redis-statsdb` line points).
- `meter-<node>`: `turnkit meter run`, its `/metrics` on the node's own address.

Once, as the signaling host runs it: `meter-central`, the central usage store (docs/metering.md):
TLS-only Redis on `[meter] central_port` with the region's private CA, AOF with fsync always, one
ACL user per node (`meter-<node>`: apply batches) and a read-only `usage` user for the signaling
service's quota gate and `turnkit usage`.

Every password derives from the meter master secret (`<region>/meter/meter.secret`, 0600): the
statsdb ones with `turnkit.meter.secret.node_password`, the central ones with their own label. They
reach processes only through 0600 files and environment variables, never argv; the ACL file holds
SHA-256 hashes only.
"""

from __future__ import annotations

import hashlib
import hmac
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from turnkit import pki, render, resources
from turnkit.config import Config
from turnkit.errors import ConfigError
from turnkit.fsutil import atomic_write
from turnkit.meter import secret
from turnkit.meter.gate import CA_ENV
from turnkit.nodes import Node
from turnkit.supervisor import Listen, Service
from turnkit.types import env_name

CENTRAL = "meter-central"
#: The central store's config, shared with the signaling role (one template set).
USAGE_STORE_TEMPLATE = "redis/turnkit-usage.conf.j2"
READER = "usage"
STATSDB_URL_ENV = "TURNKIT_STATSDB_URL"
STATSDB_PASSWORD_ENV = "TURNKIT_STATSDB_PASSWORD"

#: What a node's meter may do on the central store (tests/meter/stack.py, docs/metering.md).
WRITER_RULES = "~turnkit:usage:* +eval +hincrby +set +hgetall +hget +scan +ping +hello +auth +client"
#: What the quota gate and `turnkit usage` need: reads only.
READER_RULES = "~turnkit:usage:* +hgetall +hget +scan +ping +hello +auth +client"


@dataclass(frozen=True)
class Paths:
    """Where the region keeps its metering files (`<state>/<region>/meter/`)."""

    root: Path

    @property
    def master(self) -> Path:
        return self.root / "meter.secret"

    @property
    def central(self) -> Path:
        return self.root / "central"

    @property
    def usage_env(self) -> Path:
        """`TURNKIT_METER_CENTRAL_URL` (the read-only user) and the CA, for `turnkit usage` (0600)."""
        return self.root / "usage.env"

    def node(self, node: Node) -> Path:
        return self.root / node.name


@dataclass(frozen=True)
class Keys:
    """Passwords derived from the master secret (HMAC-SHA256, hex: no character coturn would split)."""

    master: str

    def __repr__(self) -> str:
        return "Keys(<redacted>)"

    def statsdb(self, node: Node) -> str:
        return secret.node_password(self.master, node.name)

    def central(self, user: str) -> str:
        return hmac.new(self.master.encode(), f"turnkit-central:{user}".encode(), hashlib.sha256).hexdigest()


def load_keys(paths: Paths) -> Keys:
    """The master secret, created (0600) on first use."""
    return Keys(secret.load_or_create(paths.master))


def node_user(node: Node) -> str:
    return f"meter-{node.name}"


def statsdb_port(cfg: Config, index: int) -> int:
    port = cfg.meter.statsdb_port + index
    if port > 65535:
        raise ConfigError(f"{cfg.path.name}: meter.statsdb_port: {cfg.meter.statsdb_port} + {index} node(s) > 65535")
    return port


def statsdb_url(cfg: Config, index: int) -> str:
    """The node's statsdb without its password (that goes separately, as `turnkit drain` takes it)."""
    return f"redis://127.0.0.1:{statsdb_port(cfg, index)}/{cfg.meter.statsdb_dbname}"


def central_url(cfg: Config, keys: Keys, user: str) -> str:
    return f"rediss://{user}:{keys.central(user)}@127.0.0.1:{cfg.meter.central_port}/0"


def node_overrides(cfg: Config, keys: Keys, node: Node, index: int) -> dict[str, object]:
    """Render-context values that turn the statsdb block on for a local node."""
    return {"coturn_statsdb_password": keys.statsdb(node), "coturn_statsdb_port": statsdb_port(cfg, index)}


def statsdb_service(cfg: Config, paths: Paths, node: Node, index: int, conf_text: str) -> Service:
    """The node's statsdb Redis; `conf_text` is the rendered template (holds `requirepass`, 0600)."""
    workdir = paths.node(node)
    conf = workdir / "statsdb.conf"
    port = statsdb_port(cfg, index)
    return Service(
        name=f"statsdb-{node.name}",
        # set-proc-title no: the supervisor recognises its processes by their argv.
        argv=("redis-server", str(conf), "--set-proc-title", "no", "--pidfile", str(workdir / "statsdb.pid"),
              "--dir", str(workdir)),
        env={},
        listens=(Listen("127.0.0.1", port, "tcp", "meter.statsdb_port"),),
        files={conf: conf_text},
        detail=f"statsdb redis-server on 127.0.0.1:{port}",
    )  # fmt: skip


def meter_service(
    cfg: Config, paths: Paths, keys: Keys, node: Node, index: int, ca: Path, turnkit: Sequence[str]
) -> Service:
    """`turnkit meter run` for one node; every URL with a password goes in through the environment."""
    host = node.listen_ip or "127.0.0.1"
    port = cfg.meter.metrics_port
    env = {
        STATSDB_URL_ENV: statsdb_url(cfg, index),
        STATSDB_PASSWORD_ENV: keys.statsdb(node),
        cfg.meter.central_url_env: central_url(cfg, keys, node_user(node)),
    }
    argv = (*turnkit, "meter", "run", "--node", node.name, "--region", node.region,
            "--buffer", str(paths.node(node) / "buffer.sqlite"), "--ca-file", str(ca),
            "--metrics-host", host, "--metrics-port", str(port), "--config", str(cfg.path))  # fmt: skip
    return Service(
        name=f"meter-{node.name}",
        argv=argv,
        env=env,
        listens=(Listen(host, port, "tcp", "meter.metrics_port"),),
        inputs=(cfg.path,),
        detail=f"turnkit meter for {node.name}, /metrics on {host}:{port}",
    )


def acl_text(keys: Keys, nodes: Sequence[Node]) -> str:
    """Users of the central store, by password hash. The default user stays on behind an unguessable
    password: `user default off` makes Redis 7.0 drop the AOF at restart (docs/metering.md)."""

    def sha(user: str) -> str:
        return hashlib.sha256(keys.central(user).encode()).hexdigest()

    lines = [f"user default on #{sha('default')} ~* &* +@all"]
    lines += [f"user {node_user(n)} on #{sha(node_user(n))} {WRITER_RULES}" for n in nodes]
    lines.append(f"user {READER} on #{sha(READER)} {READER_RULES}")
    return "\n".join(lines) + "\n"


def central_service(cfg: Config, paths: Paths, keys: Keys, nodes: Sequence[Node], certs: pki.CertFiles) -> Service:
    """The central usage store as the signaling host runs it (the signaling role's template): TLS
    only, ACL users, AOF; only the bind address and the paths differ."""
    workdir = paths.central
    conf, acl = workdir / "redis.conf", workdir / "users.acl"
    port = cfg.meter.central_port
    context = {
        **render.usage_store_context(cfg, nodes),
        "signaling_usage_store_bind": "127.0.0.1",
        "signaling_usage_store_cert_file": str(certs.cert),
        "signaling_usage_store_key_file": str(certs.key),
        "signaling_usage_store_acl_file": str(acl),
        "signaling_usage_store_dir": str(workdir),
    }
    env = render.environment(resources.template_dir())
    text = render.render_template(env, USAGE_STORE_TEMPLATE, context)
    return Service(
        name=CENTRAL,
        argv=("redis-server", str(conf), "--set-proc-title", "no", "--pidfile", str(workdir / "redis.pid")),
        env={},
        listens=(Listen("127.0.0.1", port, "tcp", "meter.central_port"),),
        inputs=(certs.cert,),
        files={conf: text, acl: acl_text(keys, nodes)},
        detail=f"central usage store rediss://127.0.0.1:{port}",
    )  # fmt: skip


def reader_env(cfg: Config, keys: Keys, ca: Path) -> dict[str, str]:
    """What the signaling service (quota gate) and `turnkit usage` need to read the store."""
    return {cfg.meter.central_url_env: central_url(cfg, keys, READER), CA_ENV: str(ca)}


def write_usage_env(paths: Paths, env: dict[str, str]) -> None:
    """`set -a; . <state>/<region>/meter/usage.env` before `turnkit usage` (0600: it holds a password).
    Values are quoted for the shell that sources the file (a project path may hold `$(…)` or spaces)."""
    for key in env:
        env_name(key)
    text = "".join(f"{k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))
    atomic_write(paths.usage_env, text, mode=0o600)
