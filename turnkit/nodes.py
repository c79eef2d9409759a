"""A TURN node, the one node reader, and the ICE URLs browsers use to reach the nodes."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from turnkit.config import Config


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


def region_nodes(config: Config, name: str) -> list[Node]:
    """The one node reader: the nodes of region `name`, as its provider knows them.

    An unknown region is a ConfigError and a cloud region never provisioned is NotProvisioned
    (a ConfigError too): one line each, never an empty list.
    """
    from turnkit.provision import provider_for

    return provider_for(config, name).nodes()


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
