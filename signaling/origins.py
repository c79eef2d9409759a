"""Which web pages may open a WebSocket here: the `Origin` check on the upgrade. Pure.

Browsers send the page's origin (RFC 6454 §7) with every WebSocket upgrade (RFC 6455 §4.1, §10.2); a page
from anywhere else must not ride on a user's token, so its upgrade gets a 403. Clients without `Origin`
(non-browser clients carrying a bearer token) are let through.

Allowed by default: `https://<signaling.server_name or project.domain>`, the name NGINX serves. A `local`
region's signaling process is reached directly on loopback (the demo URL `turnkit deploy` prints), so a
config with a local region adds `http://{127.0.0.1,localhost,[::1]}:<port>` (and the bind address, if
another). `signaling.allowed_origins` replaces the `https://` default.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from turnkit.config import Config

DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: A wildcard bind is reached on loopback.
WILDCARDS = frozenset({"0.0.0.0", "::"})


def normalise(origin: str) -> str | None:
    """`scheme://host[:port]` in canonical form (lower case, default port dropped), or None if `origin`
    is not a serialised http(s) origin (`null`, paths, credentials, bad ports)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    default = DEFAULT_PORTS.get(scheme)
    if default is None or not host or parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    return _origin(scheme, host, port or default)


def _origin(scheme: str, host: str, port: int) -> str:
    name = f"[{host}]" if ":" in host else host.lower()
    return f"{scheme}://{name}" + ("" if port == DEFAULT_PORTS[scheme] else f":{port}")


def _has_local_region(cfg: Config) -> bool:
    """Whether some region's services run on this machine (its provider says so)."""
    from turnkit.provision import provider_class

    return any(provider_class(region.provider).runs_here for region in cfg.regions.values())


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def loopback(bind: str, port: int) -> set[str]:
    """The origins of pages served by this process itself on `port`."""
    hosts = set(LOOPBACK_HOSTS)
    if bind not in WILDCARDS:
        hosts.add(str(ipaddress.ip_address(bind)) if _is_ip(bind) else bind)
    return {_origin("http", host, port) for host in hosts}


def allowed(cfg: Config, bind: str, port: int) -> frozenset[str]:
    """The origins this process accepts upgrades from (normalised)."""
    s = cfg.signaling
    if s.allowed_origins is not None:
        out = {o for o in map(normalise, s.allowed_origins) if o is not None}
    else:
        out = {_origin("https", s.server_name or cfg.project.domain, 443)}
    if _has_local_region(cfg):
        out |= loopback(bind, port)
    return frozenset(out)
