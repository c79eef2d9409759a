"""Resolve a region's TURN nodes and the ICE URLs browsers use to reach them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from turnkit.config import Config, Host
from turnkit.errors import ConfigError


@dataclass(frozen=True)
class Node:
    """One TURN server: the name ICE URLs use, and its addresses (private behind cloud NAT)."""

    name: str
    region: str
    hostname: str
    public_ip: str | None = None
    private_ip: str | None = None

    @property
    def external_ip(self) -> str | None:
        """coturn `external-ip` value: PUBLIC/PRIVATE behind 1:1 NAT, else PUBLIC."""
        if self.public_ip and self.private_ip and self.public_ip != self.private_ip:
            return f"{self.public_ip}/{self.private_ip}"
        return self.public_ip

    @property
    def listen_ip(self) -> str | None:
        return self.private_ip or self.public_ip

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


def state_file(config: Config, region: str) -> Path:
    """Where provisioning records a cloud region's nodes."""
    return config.state_path / "regions" / region / "nodes.json"


def _from_host(region: str, index: int, host: Host, domain: str) -> Node:
    name = host.name or f"turn-{index}"
    hostname = host.hostname or host.address
    public = host.public_ip or (host.address if _is_ip(host.address) else None)
    return Node(name, region, hostname, public, host.private_ip)


def _is_ip(value: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _local(config: Config, name: str) -> list[Node]:
    """Node N listens on 127.0.0.N: every node keeps the configured ports (loopback is a /8)."""
    return [
        Node(f"turn-{i + 1}", name, f"127.0.0.{i + 1}", f"127.0.0.{i + 1}", None)
        for i in range(config.region(name).nodes)
    ]


def _static(config: Config, name: str) -> list[Node]:
    region = config.region(name)
    return [_from_host(name, i + 1, h, config.project.domain) for i, h in enumerate(region.hosts)]


def _cloud(config: Config, name: str) -> list[Node]:
    path = state_file(config, name)
    try:
        return [Node(**item) for item in json.loads(path.read_text(encoding="utf-8"))]
    except FileNotFoundError:
        raise ConfigError(f"region `{name}`: not provisioned yet (run `turnkit provision --region {name}`)") from None
    except (ValueError, TypeError, AttributeError):
        raise ConfigError(f"{path}: corrupt node state") from None


_RESOLVERS = {"local": _local, "static": _static, "aws": _cloud, "lab": _cloud}


def region_nodes(config: Config, name: str) -> list[Node]:
    """The nodes of region `name`, from the config or from the provisioning state."""
    return _RESOLVERS[config.region(name).provider](config, name)


def stun_urls(config: Config, nodes: list[Node]) -> list[str]:
    return [f"stun:{n.hostname}:{config.ports.listening}" for n in nodes]


def turn_urls(config: Config, nodes: list[Node], tls: bool = True) -> list[str]:
    """turn: over UDP and TCP, turns: on the TLS port, and on 443 when it is shared (RFC 7065 URIs)."""
    ports = config.ports
    urls: list[str] = []
    for n in nodes:
        urls.append(f"turn:{n.hostname}:{ports.listening}?transport=udp")
        urls.append(f"turn:{n.hostname}:{ports.listening}?transport=tcp")
        if tls:
            urls.append(f"turns:{n.hostname}:{ports.tls}?transport=tcp")
            if ports.tls_443:
                urls.append(f"turns:{n.hostname}:443?transport=tcp")
    return urls
