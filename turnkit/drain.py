"""Drain a TURN node: signaling stops handing it out at once, then its live allocations run down.

Marking: the node's entry in node health (`turnkit.health`) gets `draining`, in the file the
signaling service checks on every ICE request and, when `signaling.redis_url` is set, in the Redis
document its Redis backend re-reads every heartbeat. Probe runs keep the mark; `undrain` clears it.

Counting: coturn 4.6.1 with `redis-statsdb` keeps a key
`turn/realm/<realm>/user/<user>/allocation/<id>/status` while an allocation lives, valued
`new lifetime=600, type=UDP, …` or `refreshed lifetime=N, …`. A deallocation first writes
`refreshed lifetime=0, …` and then deletes the key. A coturn stopped with SIGTERM leaves its keys
behind and deletes them when it starts again. (Checked on the real daemons in tests/ops/test_drain.py.)
The key parsing and counting here are shared with the metering service.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from turnkit import health
from turnkit.config import Config, shown
from turnkit.errors import InputError, TurnkitError
from turnkit.nodes import Node, region_nodes
from turnkit.types import host_address

#: Environment variable holding the statsdb Redis password (never in a URL on the command line).
PASSWORD_ENV = "TURNKIT_STATSDB_PASSWORD"
#: How often a drain re-counts live allocations.
POLL_INTERVAL = 1.0

_STATUS_KEY = re.compile(r"^turn/realm/(?P<realm>[^/]+)/user/(?P<user>.+)/allocation/(?P<id>\d+)/status$")
_LIFETIME = re.compile(r"(?:^|[\s,])lifetime=(\d+)")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
_DB_PATH = re.compile(r"(?:/\d*)?")
#: A node name as turnkit.toml (`config._NAME`) and every provider give one (`turn-1`).
_NODE_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")


class DrainError(TurnkitError):
    """The statsdb could not be read, or node health could not be written."""


@dataclass(frozen=True)
class Allocation:
    """One live allocation as coturn's statsdb names it."""

    realm: str
    user: str
    id: str


def status_pattern(realm: str) -> str:
    """The Redis SCAN pattern of a realm's allocation status keys (glob characters escaped)."""
    escaped = _GLOB_SPECIAL.sub(r"\\\1", realm)
    return f"turn/realm/{escaped}/user/*/allocation/*/status"


def parse_status_key(key: str) -> Allocation | None:
    match = _STATUS_KEY.match(key)
    return Allocation(match["realm"], match["user"], match["id"]) if match else None


def is_live(status: str | None) -> bool:
    """A status value of a living allocation: not gone, not `lifetime=0` (being deleted)."""
    if status is None:
        return False
    match = _LIFETIME.search(status)
    return match is None or int(match.group(1)) > 0


def live_allocations(statuses: Mapping[str, str | None], realm: str) -> list[Allocation]:
    """The allocations of `realm` among status key → value pairs that are still alive."""
    out = []
    for key, value in sorted(statuses.items()):
        alloc = parse_status_key(key)
        if alloc is not None and alloc.realm == realm and is_live(value):
            out.append(alloc)
    return out


def _as_written(text: str, limit: int = 80) -> str:
    """`text` as given when short and printable, else its cut repr: one line whatever it holds."""
    return text if text.isprintable() and len(text) <= limit else shown(text)


def node_name(name: str) -> str:
    """`name` when it can name a node (checked where the region's node list is not at hand: on the node)."""
    if not _NODE_NAME.fullmatch(name):
        raise InputError(f"--node: expected a node name like turn-1, got {shown(name)}")
    return name


def _statsdb_parts(url: str) -> SplitResult | None:
    """`url` split when it is redis[s]://HOST[:PORT][/DB] and no more (redis-py reads options from a
    query string); None for anything else, including what `urlsplit` would quietly clean up."""
    if not url.isprintable() or any(c.isspace() for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # a ValueError when out of range or not a number
        host_address(parts.hostname or "")  # an IP address or a DNS name, never anything to resolve
    except ValueError:
        return None
    plain = not (parts.query or parts.fragment) and _DB_PATH.fullmatch(parts.path) is not None
    return parts if parts.scheme in ("redis", "rediss") and port != 0 and plain else None


def statsdb_url(url: str, origin: str = "--statsdb") -> str:
    """`url` when it names a statsdb as coturn's node has one, redis[s]://HOST[:PORT][/DB] without a
    password (that comes from $TURNKIT_STATSDB_PASSWORD); else an InputError naming `origin`."""
    parts = _statsdb_parts(url)
    if parts is None:
        raise InputError(f"{origin}: expected redis://HOST:PORT/DB, got `{_as_written(url)}`")
    if parts.password:
        raise InputError(f"{origin}: put the password in ${PASSWORD_ENV}, not in the URL")
    return url


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


class StatsDb:
    """The node's coturn `redis-statsdb` (I/O edge). The URL carries no password; it comes separately."""

    def __init__(self, url: str, password: str | None = None) -> None:
        self.url = statsdb_url(url)
        self.password = password

    def __repr__(self) -> str:
        return f"StatsDb({self.url!r})"

    def statuses(self, realm: str) -> dict[str, str | None]:
        """Every status key of `realm` and its value (None when it vanished between SCAN and GET)."""
        import redis

        try:
            client = redis.Redis.from_url(self.url, password=self.password, socket_timeout=5, socket_connect_timeout=5)
            try:
                keys = [_text(k) for k in client.scan_iter(match=status_pattern(realm), count=1000)]
                values = client.mget(keys) if keys else []
            finally:
                client.close()
        except redis.RedisError as exc:
            raise DrainError(f"statsdb {self.url}: cannot read allocations: {type(exc).__name__}") from None
        return {k: None if v is None else _text(v) for k, v in zip(keys, values, strict=True)}

    def count(self, realm: str) -> int:
        return len(live_allocations(self.statuses(realm), realm))


# -- marking ---------------------------------------------------------------------------------


def find_node(cfg: Config, region: str, name: str) -> Node:
    nodes = region_nodes(cfg, region)
    for node in nodes:
        if node.name == name:
            return node
    names = ", ".join(n.name for n in nodes) or "none"
    raise InputError(f"--node: no node `{_as_written(name, 64)}` in region `{region}` (nodes: {names})")


def mark(cfg: Config, node: Node, draining: bool, now: int) -> None:
    """Set or clear the draining mark where signaling reads node health (file, and Redis if configured)."""
    node_key = health.key(node)
    try:
        health.write_draining(health.path_for(cfg), node_key, draining, now)
    except TurnkitError as exc:
        raise DrainError(f"node health: {exc}") from None
    if cfg.signaling.redis_url:
        _mark_redis(cfg.signaling.redis_url, node_key, draining, now)


def _mark_redis(url: str, node_key: str, draining: bool, now: int) -> None:
    from turnkit.probe.record import RecordError, update_health_redis

    try:
        update_health_redis(url, lambda old: health.mark_draining(old, node_key, draining, now))
    except RecordError as exc:
        raise DrainError(f"the draining mark: {exc}") from None


# -- waiting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrainReport:
    node: str
    live: int
    waited: float

    @property
    def drained(self) -> bool:
        return self.live == 0

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "live": self.live, "waited": round(self.waited, 1), "drained": self.drained}


def wait_until_idle(
    count: Callable[[], int],
    timeout: float,
    interval: float = POLL_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[int], None] = lambda _: None,
) -> tuple[int, float]:
    """Count until 0 or until `timeout` seconds passed; return the last count and the time waited."""
    start = clock()
    while True:
        live = count()
        elapsed = clock() - start
        if live == 0 or elapsed >= timeout:
            return live, elapsed
        progress(live)
        sleep(min(interval, max(timeout - elapsed, 0.0)))


def drain(
    cfg: Config,
    node: Node,
    count: Callable[[], int],
    timeout: float,
    now: int,
    interval: float = POLL_INTERVAL,
    progress: Callable[[int], None] = lambda _: None,
) -> DrainReport:
    """Mark `node` draining, then wait for its live allocations to reach 0 (or the timeout)."""
    mark(cfg, node, True, now)
    live, waited = wait_until_idle(count, timeout, interval, progress=progress)
    return DrainReport(health.key(node), live, waited)
