"""Render production configs from turnkit.toml with the one template set Ansible shares.

Pure: the config, nodes, secrets, coturn version and template directory come in; a mapping
of relative paths to file contents goes out. Context keys equal the Ansible role variables.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from turnkit import __version__
from turnkit.config import Config
from turnkit.errors import RenderError
from turnkit.filters import FILTERS, UnsafeValueError
from turnkit.nodes import Node

HEADER = f"Managed by turnkit {__version__}; local changes are overwritten on the next render or deploy."
DEFAULT_COTURN_VERSION = "4.6.1"
#: coturn's SQLite userdb holding the accepted secrets (turnkit.secretdb): Debian's own, owned by turnserver.
USERDB_FILE = "/var/lib/turn/turndb"

#: Peer addresses a relay must never reach. IPv4: the RFC 6890 special-purpose ranges (with
#: 169.254.169.254, cloud metadata). IPv6: every entry of IANA's IPv6 Special-Purpose Address
#: Registry plus deprecated site-local and multicast, and every range that embeds an IPv4 address
#: (IPv4-compatible, IPv4-mapped for CVE-2026-27624 on coturn < 4.9, NAT64, 6to4, Teredo in
#: 2001::/23): coturn 4.6.1 does not map them to IPv4 before checking (tests/test_coturn.py).
DENIED_PEER_NETWORKS: tuple[str, ...] = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/96",              # unspecified, loopback and IPv4-compatible (::127.0.0.1), RFC 4291 §2.5.5.1
    "::ffff:0:0/96",      # IPv4-mapped
    "64:ff9b::/96",       # NAT64 well-known prefix, RFC 6052
    "64:ff9b:1::/48",     # NAT64 local use, RFC 8215
    "100::/64",           # discard-only, RFC 6666
    "100:0:0:1::/64",     # dummy prefix, RFC 9780
    "2001::/23",          # IETF protocol assignments: Teredo, PCP, benchmarking, AMT, AS112, ORCHIDv2, DRIP
    "2001:db8::/32",      # documentation, RFC 3849
    "2002::/16",          # 6to4, RFC 3056 (2002:7f00:1:: is 127.0.0.1)
    "2620:4f:8000::/48",  # AS112 direct delegation, RFC 7534
    "3fff::/20",          # documentation, RFC 9637
    "5f00::/16",          # SRv6 SIDs, RFC 9602
    "fc00::/7",           # unique local, RFC 4193
    "fe80::/10",          # link-local
    "fec0::/10",          # site-local (deprecated, RFC 3879)
    "ff00::/8",           # multicast
)  # fmt: skip

#: Ranges a `local` region (allow_loopback_peers) cuts out of the deny list.
LOOPBACK_NETWORKS = frozenset({"127.0.0.0/8", "::1/128"})

# coturn 4.6.1 reads an all-zero bound as open-ended: a lone `denied-peer-ip=::` denies every
# peer, and `::-::ffff:ffff` denies every IPv4 peer (tests/test_coturn.py). So `peer_ranges`
# starts IPv6 ranges at `::1` (as 32 CIDR blocks for ::/96); coturn refuses the peer `::` itself.

#: A `lab` region (allow_lab_peers) may relay to its own hosts, 198.18.0.1-198.18.0.254 (turnkit.lab);
#: the rest of 198.18.0.0/15, the /24's network and broadcast addresses included, stays denied.
LAB_PEER_NETWORKS: tuple[str, ...] = tuple(
    str(block)
    for block in ipaddress.summarize_address_range(
        ipaddress.IPv4Address("198.18.0.1"), ipaddress.IPv4Address("198.18.0.254")
    )
)

#: Mozilla "intermediate" TLS 1.2 suites (TLS 1.3 suites are always on in OpenSSL).
CIPHER_LIST = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


#: A run of addresses of one family: (version, first, last) as integers.
Interval = tuple[int, int, int]


def _interval(cidr: str) -> Interval:
    net = ipaddress.ip_network(cidr)
    return net.version, int(net[0]), int(net[-1])


def _cut(interval: Interval, hole: Interval) -> list[Interval]:
    """`interval` minus `hole`: zero, one or two intervals (untouched across families)."""
    (version, first, last), (hole_version, lo, hi) = interval, hole
    if version != hole_version or hi < first or last < lo:
        return [interval]
    return [(version, a, b) for a, b in ((first, lo - 1), (hi + 1, last)) if a <= b]


def _address(version: int, value: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def peer_ranges(networks: Sequence[str] = DENIED_PEER_NETWORKS, allowed: Iterable[str] = ()) -> list[str]:
    """CIDRs minus `allowed` ones, as coturn `denied-peer-ip` ranges (`first-last`; 4.6 takes no CIDR).

    Each range is one CIDR block: coturn 4.6.1 compares IPv6 bounds byte by byte, so `::1-::ffff:ffff`
    misses `::8000:0`; an aligned block's bytes always bracket its members.
    """
    intervals = [_interval(cidr) for cidr in networks]
    for cidr in allowed:
        intervals = [piece for interval in intervals for piece in _cut(interval, _interval(cidr))]
    out = []
    for version, low, last in intervals:
        first = 1 if (version, low) == (6, 0) else low  # never `::` as a bound (the quirk above)
        if first > last:
            continue
        for block in ipaddress.summarize_address_range(_address(version, first), _address(version, last)):
            out.append(str(block[0]) if block.num_addresses == 1 else f"{block[0]}-{block[-1]}")
    return out


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def coturn_context(cfg: Config, node: Node, secrets: Sequence[str], coturn_version: str) -> dict[str, Any]:
    """Variables of the `coturn` role for one node."""
    ports, coturn = cfg.ports, cfg.coturn
    listen = node.listen_ip
    region = cfg.region(node.region)
    loopback = region.allow_loopback_peers
    allowed = [*(LOOPBACK_NETWORKS if loopback else ()), *(LAB_PEER_NETWORKS if region.allow_lab_peers else ())]
    return {
        "coturn_node_name": node.name,
        "coturn_version": coturn_version,
        "coturn_listening_port": ports.listening,
        "coturn_tls_listening_port": ports.tls,
        "coturn_listening_ips": [listen] if listen else [],
        "coturn_relay_ips": [listen] if listen else [],
        "coturn_external_ip": node.external_ip if node.private_ip else None,
        "coturn_min_port": ports.relay_min,
        "coturn_max_port": ports.relay_max,
        "coturn_realm": cfg.project.effective_realm,
        "coturn_static_auth_secrets": list(secrets),
        "coturn_userdb": USERDB_FILE,
        "coturn_stale_nonce": coturn.stale_nonce,
        "coturn_user_quota": coturn.user_quota,
        "coturn_total_quota": coturn.total_quota,
        "coturn_max_bps": coturn.max_bps,
        "coturn_tls_enabled": True,
        "coturn_cert_file": f"{coturn.cert_dir}/fullchain.pem",
        "coturn_pkey_file": f"{coturn.cert_dir}/privkey.pem",
        "coturn_cipher_list": CIPHER_LIST,
        "coturn_legacy_tls_flags": version_tuple(coturn_version) < (4, 7),
        "coturn_tcp_relay": coturn.tcp_relay,
        "coturn_allow_loopback_peers": loopback,
        "coturn_denied_peer_ranges": peer_ranges(DENIED_PEER_NETWORKS, allowed),
        "coturn_pidfile": "/run/turnserver/turnserver.pid",
        "coturn_log_file": None,
        "coturn_verbose": False,
        "coturn_limit_nofile": 1048576,
        "coturn_bind_privileged": min(ports.listening, ports.tls) < 1024,
        **statsdb_context(cfg, node.region),
    }


def statsdb_context(cfg: Config, region: str) -> dict[str, Any]:
    """The node-local statsdb Redis (issue 14); its password comes in through `coturn_statsdb_password`."""
    return {
        "coturn_statsdb_port": cfg.meter.statsdb_port,
        "coturn_statsdb_dbname": cfg.meter.statsdb_dbname,
        "coturn_statsdb_password": None,
        "coturn_bps_capacity": cfg.meter.node_bps_capacity,
        "coturn_meter_region": region,
        "coturn_meter_statsdb_unit": "redis-server@turnkit-statsdb.service",
        "coturn_meter_config_dir": "/etc/turnkit",
        "coturn_meter_env_file": "/etc/turnkit/meter.env",
        "coturn_meter_exec": "/opt/turnkit/venv/bin/turnkit",
        "coturn_meter_metrics_host": "0.0.0.0",
        "coturn_meter_metrics_port": cfg.meter.metrics_port,
    }


def host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets (NGINX `server [::1]:8080`)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def signaling_ports(cfg: Config) -> list[int]:
    """Instance N listens on port + N - 1 (systemd `turnkit-signaling@PORT`)."""
    return [cfg.signaling.port + i for i in range(cfg.signaling.instances)]


def signaling_context(cfg: Config, nodes: Sequence[Node]) -> dict[str, Any]:
    """Variables of the `signaling` role."""
    return {
        "signaling_host": cfg.signaling.host,
        "signaling_ports": signaling_ports(cfg),
        "signaling_redis_url": cfg.signaling.redis_url,
        "signaling_config_dir": "/etc/turnkit",
        "signaling_env_file": "/etc/turnkit/signaling.env",
        "signaling_secrets_file": "/etc/turnkit/turnkit.secrets.json",
        "signaling_exec": "/opt/turnkit/venv/bin/turnkit",
        "signaling_limit_nofile": 65536,
    }


#: The central usage store's certificate copy and ACL (readable by redis only); the certbot deploy
#: hook refreshes the certificate there on renewal.
USAGE_STORE_TLS_DIR = "/etc/redis/turnkit-usage"


def usage_store_context(cfg: Config, nodes: Sequence[Node]) -> dict[str, Any]:
    """Variables of the signaling role's central usage store (issue 14, docs/metering.md)."""
    return {
        "signaling_usage_store_bind": "0.0.0.0",
        "signaling_usage_store_port": cfg.meter.central_port,
        "signaling_usage_store_cert_file": f"{USAGE_STORE_TLS_DIR}/fullchain.pem",
        "signaling_usage_store_key_file": f"{USAGE_STORE_TLS_DIR}/privkey.pem",
        "signaling_usage_store_acl_file": f"{USAGE_STORE_TLS_DIR}/users.acl",
        "signaling_usage_store_dir": "/var/lib/redis",
    }


def nginx_context(cfg: Config, nodes: Sequence[Node]) -> dict[str, Any]:
    """Variables of the `nginx` role: the signaling host, and 443 shared with TURN/TLS if asked."""
    server_name = cfg.signaling.server_name or cfg.project.domain
    shared = cfg.ports.tls_443
    live = f"{cfg.tls.live_dir}/{server_name}"
    return {
        "nginx_server_name": server_name,
        "nginx_server_names": [server_name],
        "nginx_upstream_servers": [host_port(cfg.signaling.host, p) for p in signaling_ports(cfg)],
        "nginx_http_port": 80,
        "nginx_https_listen": "127.0.0.1:8443" if shared else "443",
        "nginx_https_upstream": "127.0.0.1:8443",
        "nginx_tls_443_shared": shared,
        "nginx_turn_server_names": [n.hostname for n in nodes],
        "nginx_turn_tls_upstream": f"127.0.0.1:{cfg.ports.tls}",
        "nginx_stream_module": "/usr/lib/nginx/modules/ngx_stream_module.so",
        "nginx_cert_file": f"{live}/fullchain.pem",
        "nginx_key_file": f"{live}/privkey.pem",
        "nginx_ssl_ciphers": CIPHER_LIST,
        "nginx_acme_webroot": cfg.tls.webroot,
        "nginx_ws_read_timeout": "3600s",
        "nginx_user": "www-data",
        "nginx_pid_file": "/run/nginx.pid",
        "nginx_log_dir": "/var/log/nginx",
        "nginx_temp_dir": "/var/lib/nginx",
        "nginx_mime_types": "/etc/nginx/mime.types",
        "nginx_worker_connections": 8192,
        "nginx_worker_rlimit_nofile": 32768,
    }


def certbot_context(cfg: Config, nodes: Sequence[Node]) -> dict[str, Any]:
    """Variables of the `certbot` role."""
    return {
        "certbot_acme_server": cfg.tls.acme_server,
        "certbot_email": cfg.tls.email,
        "certbot_webroot": cfg.tls.webroot,
        "certbot_deploy_hook_path": "/etc/letsencrypt/renewal-hooks/deploy/turnkit-install-certs.sh",
        "certbot_coturn_cert_dir": cfg.coturn.cert_dir,
        "certbot_coturn_user": "turnserver",
        "certbot_coturn_reload_command": "systemctl kill --signal=SIGUSR2 coturn.service",
        "certbot_nginx_reload_command": "systemctl reload nginx.service",
        # The usage store's copy of the certificate (signaling host only; the hook skips a missing dir).
        "certbot_usage_store_cert_dir": USAGE_STORE_TLS_DIR,
        "certbot_usage_store_group": "redis",
        "certbot_usage_store_reload_command": "systemctl restart redis-server@turnkit-usage.service",
    }


def probe_context(cfg: Config, nodes: Sequence[Node]) -> dict[str, Any]:
    """Variables of the `probe` role."""
    return {
        "probe_config_dir": "/etc/turnkit",
        "probe_secrets_file": "/etc/turnkit/turnkit.secrets.json",
        "probe_exec": "/opt/turnkit/venv/bin/turnkit",
        "probe_textfile_dir": "/var/lib/prometheus/node-exporter",
        "probe_textfile_group": "turnkit-metrics",
        "probe_textfile": "/var/lib/prometheus/node-exporter/turnkit_probe.prom",
        "probe_on_calendar": "*-*-* 03:00:00",
        "probe_randomized_delay": "30min",
        "probe_timeout": "10min",
    }


@dataclass(frozen=True)
class Target:
    """One rendered file: its template, where it goes (relative), its mode, its role context."""

    template: str
    dest: str
    mode: int
    context: Callable[[Config, Sequence[Node]], dict[str, Any]]


#: Region-wide files (the signaling host); per-node coturn files are rendered by `render_node`.
REGION_TARGETS: tuple[Target, ...] = (
    Target("nginx/nginx.conf.j2", "signaling/nginx/nginx.conf", 0o644, nginx_context),
    Target("systemd/turnkit-signaling@.service.j2", "signaling/systemd/turnkit-signaling@.service", 0o644,
           signaling_context),
    Target("systemd/turnkit-probe.service.j2", "signaling/systemd/turnkit-probe.service", 0o644, probe_context),
    Target("systemd/turnkit-probe.timer.j2", "signaling/systemd/turnkit-probe.timer", 0o644, probe_context),
    Target("certbot/cli.ini.j2", "signaling/letsencrypt/cli.ini", 0o644, certbot_context),
    Target("redis/turnkit-usage.conf.j2", "signaling/redis/redis-turnkit-usage.conf", 0o640, usage_store_context),
    Target("certbot/deploy-hook.sh.j2", "signaling/letsencrypt/renewal-hooks/deploy/turnkit-install-certs.sh",
           0o755, certbot_context),
)  # fmt: skip

#: Per-node files: (template, destination under `<node>/`, mode).
NODE_TARGETS: tuple[tuple[str, str, int], ...] = (
    ("coturn/turnserver.conf.j2", "turnserver.conf", 0o640),
    ("coturn/coturn-override.conf.j2", "systemd/coturn.service.d/turnkit.conf", 0o644),
    ("systemd/turnkit-meter.service.j2", "systemd/turnkit-meter.service", 0o644),
    ("redis/turnkit-statsdb.conf.j2", "redis/redis-turnkit-statsdb.conf", 0o640),
)


@dataclass(frozen=True)
class Rendered:
    content: str
    mode: int


def environment(template_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(FILTERS)
    return env


def render_template(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    try:
        return env.get_template(name).render({"turnkit_header": HEADER, **context})
    except jinja2.TemplateNotFound:
        raise RenderError(f"template `{name}` not found in {env.loader.searchpath}") from None  # type: ignore[union-attr]
    except jinja2.UndefinedError as exc:
        raise RenderError(f"template `{name}`: {exc.message}") from None
    except UnsafeValueError as exc:
        raise RenderError(f"template `{name}`: {exc}") from None


def render_node(
    env: jinja2.Environment,
    cfg: Config,
    node: Node,
    secrets: Sequence[str],
    coturn_version: str,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Rendered]:
    """coturn files for one node, keyed `<node>/<dest>`."""
    context = {**coturn_context(cfg, node, secrets, coturn_version), **(overrides or {})}
    return {
        f"{node.name}/{dest}": Rendered(render_template(env, tpl, context), mode) for tpl, dest, mode in NODE_TARGETS
    }


def render_region(
    cfg: Config,
    nodes: Sequence[Node],
    secrets: Sequence[str],
    coturn_version: str,
    template_dir: Path,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Rendered]:
    """Every file of a region: per node coturn, and the signaling host's nginx/systemd/certbot."""
    if not secrets:
        raise RenderError("no TURN secrets to render (run `turnkit secret init`)")
    env = environment(template_dir)
    files: dict[str, Rendered] = {}
    for node in nodes:
        files.update(render_node(env, cfg, node, secrets, coturn_version, overrides))
    for target in REGION_TARGETS:
        context = {**target.context(cfg, nodes), **(overrides or {})}
        files[target.dest] = Rendered(render_template(env, target.template, context), target.mode)
    return files


def write_tree(out: Path, files: Mapping[str, Rendered]) -> None:
    """The I/O edge: write each rendered file atomically (temp + rename) with its mode."""
    from turnkit.fsutil import atomic_write

    for rel, item in sorted(files.items()):
        atomic_write(out / rel, item.content, mode=item.mode)
