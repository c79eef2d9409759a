"""What a remote region's metering needs from the controller (issue 14 on Ansible-deployed nodes).

The controller keeps the region's meter master secret (`<state>/regions/<region>/meter/meter.secret`,
0600) and derives every password from it, exactly as the local region does (`turnkit.localmeter.Keys`):

- each TURN node: its statsdb password and the URL of the central store with its own ACL user
  (`coturn_statsdb_password`, `coturn_meter_central_url`: secret variables, extra-vars file only);
- the signaling host: the central store's ACL file (password hashes; `signaling_usage_store_acl`) and
  the read-only `usage` user's URL for its quota gate (`signaling_usage_store_reader_env`, merged into
  the service's root-only environment file);
- the operator: `usage.env` (0600) with the read-only `usage` user, for `turnkit usage`.

The central store is the signaling host's TLS Redis, named by the host name its certificate is for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from turnkit import localmeter
from turnkit.config import Config
from turnkit.meter.gate import CA_ENV
from turnkit.nodes import Node


def paths(cfg: Config, region: str) -> localmeter.Paths:
    return localmeter.Paths(cfg.state_path / "regions" / region / "meter")


def central_host(cfg: Config) -> str:
    """The name the signaling host's certificate is for (NGINX's `server_name`)."""
    return cfg.signaling.server_name or cfg.project.domain


def central_url(cfg: Config, keys: localmeter.Keys, user: str) -> str:
    return f"rediss://{user}:{keys.central(user)}@{central_host(cfg)}:{cfg.meter.central_port}/0"


def node_secrets(cfg: Config, keys: localmeter.Keys, node: Node) -> dict[str, Any]:
    """Secret variables of one TURN node's run: its statsdb password and its central store URL."""
    return {
        "coturn_statsdb_password": keys.statsdb(node),
        "coturn_meter_central_url": central_url(cfg, keys, localmeter.node_user(node)),
    }


def signaling_secrets(cfg: Config, keys: localmeter.Keys, nodes: Sequence[Node]) -> dict[str, Any]:
    """The signaling host's secret variables: the central store's users (hashes only), and the
    environment the signaling service's quota gate reads the store with (the read-only user's URL).

    The URL names the store by `central_host`, the name its certificate is for (so TLS verifies) and
    the one the TURN nodes' meters use: it must resolve on the signaling host to an address the store
    listens on (every address) and reach it, as in the lab (the host's own DNS record)."""
    return {
        "signaling_usage_store_acl": localmeter.acl_text(keys, nodes),
        "signaling_usage_store_reader_env": {cfg.meter.central_url_env: central_url(cfg, keys, localmeter.READER)},
    }


def ca_vars(ca_file: Path | None) -> dict[str, Any]:
    """The CA the central store's certificate chains to when it is not a public one (the lab's
    ACME root): its PEM text (public) for the TURN nodes' meters and the signaling host's quota gate."""
    if not ca_file:
        return {}
    pem = ca_file.read_text(encoding="ascii")
    return {"coturn_meter_central_ca_pem": pem, "signaling_usage_store_ca_pem": pem}


def write_usage_env(cfg: Config, region: str, keys: localmeter.Keys, ca_file: Path | None) -> Path:
    """`set -a; . <state>/regions/<region>/meter/usage.env` before `turnkit usage` (0600)."""
    env = {cfg.meter.central_url_env: central_url(cfg, keys, localmeter.READER)}
    if ca_file:
        env[CA_ENV] = str(ca_file.resolve())
    where = paths(cfg, region)
    localmeter.write_usage_env(where, env)
    return where.usage_env
