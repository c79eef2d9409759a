"""Where the Redis backend connects: one Redis URL, or a Sentinel-watched service (`redis+sentinel://`).

`redis://`, `rediss://` and `unix://` URLs go to redis-py's `Redis.from_url` unchanged. A Sentinel URL
names the sentinels and the monitored service; redis-py's `Sentinel.master_for` then asks the sentinels
for the current primary on every new connection, which is what makes a failover reachable:

    redis+sentinel://[[user]:password@]host:port[,host:port…]/service_name[/db]

The password (if any) authenticates to the primary; the sentinels themselves are asked without one.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.sentinel import Sentinel as SyncSentinel

SENTINEL_SCHEME = "redis+sentinel"
_HOST_PORT = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>[0-9]{1,5})")
_SERVICE = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RedisUrlError(ValueError):
    """A Redis URL that cannot be used; the message never contains the password."""


@dataclass(frozen=True)
class SentinelTarget:
    """A parsed `redis+sentinel://` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_sentinel(url: str) -> SentinelTarget:
    """The sentinels, service name, db and credentials of a `redis+sentinel://` URL."""
    scheme, sep, rest = url.partition("://")
    if scheme != SENTINEL_SCHEME or not sep:
        raise RedisUrlError(f"expected `{SENTINEL_SCHEME}://host:port[,host:port…]/service_name[/db]`")
    if "?" in rest or "#" in rest:
        raise RedisUrlError("a Sentinel URL takes no query or fragment")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = []
    for item in hosts.split(","):
        m = _HOST_PORT.fullmatch(item)
        if m is None or not 0 < int(m["port"]) < 65536:
            raise RedisUrlError(f"sentinel address `{item}` is not host:port")
        sentinels.append((m["v6"] or m["host"], int(m["port"])))
    service, _, db = path.partition("/")
    if not _SERVICE.fullmatch(service):
        raise RedisUrlError("the path must start with the Sentinel service name (`/service_name[/db]`)")
    if db and not (db.isdigit() and int(db) < 1 << 16):
        raise RedisUrlError(f"database `{db}` is not a number")
    return SentinelTarget(tuple(sentinels), service, int(db or 0), username, password)


def connect(url: str, **options: Any) -> tuple[aioredis.Redis, Callable[[], Awaitable[None]]]:
    """A client for `url` and a function that closes whatever else it opened (the sentinel clients).

    Raises RedisUrlError for a malformed URL.
    """
    if not url.startswith(SENTINEL_SCHEME + "://"):
        try:
            client = aioredis.Redis.from_url(url, **options)
        except ValueError as exc:
            raise RedisUrlError(str(exc).replace(url, safe(url))) from None
        return client, _nothing
    target = parse_sentinel(url)
    socket_options = {k: v for k, v in options.items() if k.startswith("socket_")}
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=socket_options)
    client = sentinel.master_for(
        target.service, db=target.db, username=target.username, password=target.password, **options
    )
    return client, sentinel.aclose


def sync_client(url: str, **options: Any) -> redis.Redis:
    """A blocking client for `url` (for `turnkit probe` publishing node health). Raises RedisUrlError."""
    if not url.startswith(SENTINEL_SCHEME + "://"):
        try:
            return redis.Redis.from_url(url, **options)
        except ValueError as exc:
            raise RedisUrlError(str(exc).replace(url, safe(url))) from None
    target = parse_sentinel(url)
    socket_options = {k: v for k, v in options.items() if k.startswith("socket_")}
    sentinel = SyncSentinel(list(target.sentinels), sentinel_kwargs=socket_options)
    return sentinel.master_for(
        target.service, db=target.db, username=target.username, password=target.password, **options
    )


async def _nothing() -> None:
    return None


def safe(url: str) -> str:
    """The URL without its password (for logs and errors)."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"
