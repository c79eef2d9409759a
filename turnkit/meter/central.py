"""The central usage store: a Redis reached over TLS (`rediss://`) with a per-node ACL user.

A batch is applied by one Lua script: `SET batch-id NX` then the increments, atomically, so a
batch resent after an outage or a lost acknowledgement is counted once. Layout:

- `turnkit:usage:day:<YYYY-MM-DD>` hash, field `<region>|<node>|<user, %-quoted>|<metric>`
- `turnkit:usage:month:<YYYY-MM>:user` / `…:region` hashes of billed egress bytes (quotas)
- `turnkit:usage:batch:<node>:<batch id>` applied-batch markers, kept 400 days
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

import redis

from turnkit.config import shown
from turnkit.errors import TurnkitError
from turnkit.meter.ledger import Usage

PREFIX = "turnkit:usage"
METRICS = ("client_rx", "client_tx", "peer_rx", "peer_tx", "started", "ended", "relay_seconds")
MARK_SECONDS = 400 * 86400

_APPLY = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for i = 2, #ARGV, 3 do redis.call('HINCRBY', ARGV[i], ARGV[i + 1], ARGV[i + 2]) end
return 1
"""


@dataclass(frozen=True)
class Row:
    """One (day, region, node, user) figure read back from the store."""

    day: str
    region: str
    node: str
    user: str
    metrics: dict[str, int]

    def get(self, metric: str) -> int:
        return self.metrics.get(metric, 0)


def day_key(day: str) -> str:
    return f"{PREFIX}:day:{day}"


def month_key(month: str, scope: str) -> str:
    return f"{PREFIX}:month:{month}:{scope}"


def increments(node: str, region: str, rows: Iterable[Usage]) -> list[tuple[str, str, int]]:
    """(hash, field, amount) for every non-zero figure of a batch. Pure."""
    out: list[tuple[str, str, int]] = []
    for u in rows:
        user = quote(u.user, safe="")
        for metric in METRICS:
            amount = int(getattr(u, metric))
            if amount:
                out.append((day_key(u.day), f"{region}|{node}|{user}|{metric}", amount))
        egress = u.client_tx + u.peer_tx
        if egress:
            out.append((month_key(u.day[:7], "user"), user, egress))
            out.append((month_key(u.day[:7], "region"), region, egress))
    return out


class Central:
    """The store as the meter (writes batches) and `turnkit usage`/signaling (read) see it."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    @classmethod
    def from_url(cls, url: str, ca_file: str | None = None, timeout: float = 5.0) -> Central:
        """A client of the store at `url`; a CA file goes with `rediss://` only and must be readable now
        (redis-py reads it at the first connection, where a mistake would look like an outage)."""
        kw: dict[str, object] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if ca_file:
            if not url.startswith("rediss://"):
                raise TurnkitError("central usage store: a CA file needs a rediss:// (TLS) URL")
            if not os.access(ca_file, os.R_OK) or not os.path.isfile(ca_file):
                raise TurnkitError(f"central usage store: cannot read the CA file {shown(ca_file)}")
            kw["ssl_ca_certs"] = ca_file
        return cls(redis.Redis.from_url(url, **kw))

    def apply(self, node: str, region: str, batch_id: str, rows: Sequence[Usage]) -> bool:
        """Apply a batch once; False if this batch id was applied before (a resend)."""
        args: list[str | int] = [MARK_SECONDS]
        for h, f, n in increments(node, region, rows):
            args += [h, f, n]
        done = self.redis.eval(_APPLY, 1, f"{PREFIX}:batch:{node}:{batch_id}", *args)
        return bool(done)

    def rows(self, since: dt.date, until: dt.date) -> list[Row]:
        """Every row of the days from `since` to `until` (inclusive); only days that have data are read."""
        first, last = since.isoformat(), until.isoformat()
        days = sorted(
            day
            for key in self.redis.scan_iter(match=day_key("*"), count=1000)
            if first <= (day := _text(key).rsplit(":", 1)[1]) <= last
        )
        out: list[Row] = []
        for day in days:
            merged: dict[tuple[str, str, str], dict[str, int]] = {}
            for field, value in self.redis.hgetall(day_key(day)).items():
                region, node, user, metric = _text(field).split("|")
                merged.setdefault((region, node, unquote(user)), {})[metric] = int(value)
            out += [Row(day, r, n, u, m) for (r, n, u), m in merged.items()]
        return out

    def month_user_egress(self, month: str, user: str) -> int:
        value = self.redis.hget(month_key(month, "user"), quote(user, safe=""))
        return int(value) if value else 0

    def month_region_egress(self, month: str) -> dict[str, int]:
        raw = self.redis.hgetall(month_key(month, "region"))
        return {_text(k): int(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
