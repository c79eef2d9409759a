"""What to probe: endpoints from a region's nodes or from ICE URLs (RFC 7064 `stun:`, RFC 7065 `turn:`).

Pure: config, nodes and URLs in, endpoints out.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence

from turnkit.config import Config
from turnkit.errors import InputError
from turnkit.nodes import Node
from turnkit.probe.result import Endpoint, Transport
from turnkit.provision import provider_class

#: scheme → (default port, default transport, transports allowed in `?transport=`).
SCHEMES: dict[str, tuple[int, Transport, dict[str, Transport]]] = {
    "stun": (3478, Transport.UDP, {"udp": Transport.UDP, "tcp": Transport.TCP}),
    "turn": (3478, Transport.UDP, {"udp": Transport.UDP, "tcp": Transport.TCP}),
    "turns": (5349, Transport.TLS, {"tcp": Transport.TLS}),
}

_URL = re.compile(
    r"^(?P<scheme>[a-z]+):(?P<host>\[[0-9A-Fa-f:.]+\]|[^:?\[\]/]+)(?::(?P<port>[^?]*))?(?:\?(?P<query>.*))?$"
)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def parse_url(url: str) -> Endpoint:
    """`turn:host:port?transport=udp|tcp`, `turns:host:port`, `stun:host:port` → an Endpoint."""
    m = _URL.match(url.strip())
    if not m or m["scheme"] not in SCHEMES:
        raise InputError(
            f"url `{url}`: expected stun:HOST[:PORT], turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT]"
        )
    default_port, transport, allowed = SCHEMES[m["scheme"]]
    host = m["host"].strip("[]")
    port = default_port
    if m["port"] is not None:
        if not m["port"].isdigit() or not 1 <= int(m["port"]) <= 65535:
            raise InputError(f"url `{url}`: port must be 1..65535, got {m['port']!r}")
        port = int(m["port"])
    if m["query"]:
        key, _, value = m["query"].partition("=")
        if key != "transport" or value not in allowed:
            raise InputError(f"url `{url}`: query must be transport={'|'.join(allowed)}, got {m['query']!r}")
        transport = allowed[value]
    scheme = "stun" if m["scheme"] == "stun" else "turn"
    local = _is_loopback(host)
    node = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # not a configured node: name it by address
    return Endpoint(region="", node=node, host=host, port=port, transport=transport, scheme=scheme, loopback_only=local)


def node_endpoints(cfg: Config, nodes: Sequence[Node]) -> list[Endpoint]:
    """UDP, TCP and TLS endpoints of each node, on the ports turnkit.toml configures."""
    out = []
    for n in nodes:
        region = cfg.region(n.region)
        local = provider_class(region.provider).runs_here
        common = {
            "region": n.region,
            "node": n.name,
            "host": n.hostname,
            "expected_ip": n.public_ip,
            "loopback_only": local,
            "loopback_allowed": region.allow_loopback_peers,
        }
        out.append(Endpoint(port=cfg.ports.listening, transport=Transport.UDP, **common))  # type: ignore[arg-type]
        out.append(Endpoint(port=cfg.ports.listening, transport=Transport.TCP, **common))  # type: ignore[arg-type]
        out.append(Endpoint(port=cfg.ports.tls, transport=Transport.TLS, **common))  # type: ignore[arg-type]
    return out


def label(endpoints: Iterable[Endpoint], cfg: Config | None, nodes: Mapping[str, Node]) -> list[Endpoint]:
    """Give URL endpoints the region/node name (and loopback policy) of the configured node at that host."""
    out = []
    for ep in endpoints:
        node = nodes.get(ep.host)
        if node is None or cfg is None:
            out.append(ep)
            continue
        region = cfg.region(node.region)
        out.append(
            Endpoint(
                region=node.region,
                node=node.name,
                host=ep.host,
                port=ep.port,
                transport=ep.transport,
                scheme=ep.scheme,
                expected_ip=node.public_ip,
                loopback_only=ep.loopback_only or provider_class(region.provider).runs_here,
                loopback_allowed=region.allow_loopback_peers,
            )
        )
    return out


def ice_server_urls(doc: object) -> list[tuple[str, str | None, str | None]]:
    """(url, username, credential) for every URL in an `{"iceServers": [...]}` answer."""
    servers = doc.get("iceServers") if isinstance(doc, dict) else None
    if not isinstance(servers, list):
        raise InputError("signaling answer: no `iceServers` list")
    out = []
    for server in servers:
        if not isinstance(server, dict):
            raise InputError("signaling answer: `iceServers` entries must be objects")
        urls = server.get("urls", [])
        for url in [urls] if isinstance(urls, str) else urls:
            out.append((str(url), server.get("username"), server.get("credential")))
    return out
