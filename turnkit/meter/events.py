"""coturn 4.6.1 `redis-statsdb` channels and payloads (verified, see docs/metering.md). No I/O.

`turn/realm/<realm>/user/<username>/allocation/<id>/<kind>` where kind is `status`, `traffic`,
`traffic/peer`, `total_traffic` or `total_traffic/peer`; traffic payloads read
`rcvp=N, rcvb=N, sentp=N, sentb=N` and `traffic` ones are deltas since the previous report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

#: PSUBSCRIBE pattern for every allocation event of every realm on the node's statsdb.
PATTERN = "turn/realm/*/user/*/allocation/*"
#: SCAN pattern for the live-allocation status keys (also what `turnkit drain` counts).
STATUS_KEYS = "turn/realm/*/user/*/allocation/*/status"

_CHANNEL = re.compile(
    r"^turn/realm/(?P<realm>[^/]+)/user/(?P<username>.*)/allocation/(?P<alloc>[0-9]+)"
    r"/(?P<kind>status|traffic|traffic/peer|total_traffic|total_traffic/peer)$"
)
_COUNTS = re.compile(r"^rcvp=(\d+), rcvb=(\d+), sentp=(\d+), sentb=(\d+)$")


class Kind(Enum):
    STATUS = "status"
    TRAFFIC = "traffic"
    PEER_TRAFFIC = "traffic/peer"
    TOTAL = "total_traffic"
    PEER_TOTAL = "total_traffic/peer"


@dataclass(frozen=True)
class Counts:
    """Bytes and packets one side of an allocation received (`rcv`) and sent (`sent`)."""

    rcvp: int = 0
    rcvb: int = 0
    sentp: int = 0
    sentb: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.rcvp + other.rcvp, self.rcvb + other.rcvb, self.sentp + other.sentp, self.sentb + other.sentb
        )

    def __sub__(self, other: Counts) -> Counts:
        return Counts(
            self.rcvp - other.rcvp, self.rcvb - other.rcvb, self.sentp - other.sentp, self.sentb - other.sentb
        )

    def clamp(self) -> Counts:
        """No negative corrections: a total below what was already counted adds nothing."""
        return Counts(max(self.rcvp, 0), max(self.rcvb, 0), max(self.sentp, 0), max(self.sentb, 0))


@dataclass(frozen=True)
class Event:
    """One statsdb message: which allocation, which kind, and its parsed payload."""

    realm: str
    username: str
    alloc: str
    kind: Kind
    counts: Counts | None = None  # traffic kinds
    status: str | None = None  # `new …`, `refreshed …` or `deleted`

    @property
    def user_id(self) -> str:
        """The user id of a TURN REST username `<expiry>:<user id>` (the part after the first `:`)."""
        return self.username.split(":", 1)[1] if ":" in self.username else self.username


class BadEvent(ValueError):
    """A statsdb message that is not one of coturn's allocation events."""


def parse_counts(payload: str) -> Counts:
    m = _COUNTS.match(payload.strip())
    if not m:
        raise BadEvent(f"traffic payload not understood: {payload[:80]!r}")
    return Counts(*(int(g) for g in m.groups()))


def parse(channel: str, payload: str) -> Event | None:
    """An allocation event, or None for one to ignore (no username: a session that never allocated)."""
    m = _CHANNEL.match(channel)
    if not m:
        raise BadEvent(f"not a statsdb allocation channel: {channel[:120]!r}")
    if not m["username"]:
        return None
    kind = Kind(m["kind"])
    if kind is Kind.STATUS:
        return Event(m["realm"], m["username"], m["alloc"], kind, status=payload.strip())
    return Event(m["realm"], m["username"], m["alloc"], kind, counts=parse_counts(payload))


def status_key(realm: str, username: str, alloc: str) -> str:
    return f"turn/realm/{realm}/user/{username}/allocation/{alloc}/status"
