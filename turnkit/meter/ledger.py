"""From statsdb events to usage rows: deltas while a session lives, the total at close. No I/O.

Each allocation is a `Session` holding what has been counted for it so far (client and peer side).
`traffic` deltas are counted as they come; at close `total_traffic` replaces them: only
`total - counted` is added, so deltas the meter missed (restart, Redis reconnect) are made up and
nothing is counted twice. Sessions are persisted by the caller after every step.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from turnkit.meter.events import Counts, Event, Kind

#: Seconds a session may stay without its status key, or half-closed, before it is closed as is.
GRACE = 30.0


@dataclass(frozen=True)
class Session:
    key: str  # realm/username/alloc
    user: str
    started: float
    client: Counts = field(default_factory=Counts)
    peer: Counts = field(default_factory=Counts)
    deleted: bool = False
    client_closed: bool = False
    peer_closed: bool = False
    last_seen: float = 0.0

    @property
    def complete(self) -> bool:
        return self.client_closed and self.peer_closed


@dataclass(frozen=True)
class Usage:
    """What to add to one (day, user) row of the node's usage."""

    day: str
    user: str
    client_rx: int = 0  # bytes the relay got from the client (user's upload)
    client_tx: int = 0  # bytes the relay sent to the client (user's download; billed egress)
    peer_rx: int = 0
    peer_tx: int = 0  # bytes the relay sent to peers (billed egress)
    started: int = 0
    ended: int = 0
    relay_seconds: int = 0

    @property
    def empty(self) -> bool:
        return not any(
            (self.client_rx, self.client_tx, self.peer_rx, self.peer_tx, self.started, self.ended, self.relay_seconds)
        )


@dataclass(frozen=True)
class Step:
    """The outcome of one event: sessions to store, sessions to forget, usage to add."""

    upsert: tuple[Session, ...] = ()
    remove: tuple[str, ...] = ()
    usage: tuple[Usage, ...] = ()


def day_of(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).date().isoformat()


def session_key(event: Event) -> str:
    return f"{event.realm}/{event.username}/{event.alloc}"


def _traffic_usage(day: str, user: str, client: Counts, peer: Counts) -> Usage:
    return Usage(day, user, client.rcvb, client.sentb, peer.rcvb, peer.sentb)


def _end(session: Session, now: float) -> tuple[str, Usage]:
    seconds = max(int(now - session.started), 0)
    return session.key, Usage(day_of(now), session.user, ended=1, relay_seconds=seconds)


def step(sessions: dict[str, Session], event: Event, now: float) -> Step:
    """Apply one event to `sessions` (not mutated) and say what changes."""
    key, day = session_key(event), day_of(now)
    current = sessions.get(key)
    if event.kind is Kind.STATUS:
        return _status(current, event, key, day, now)
    session = current or Session(key, event.user_id, now, last_seen=now)
    assert event.counts is not None
    if event.kind is Kind.TRAFFIC:
        nxt = replace(session, client=session.client + event.counts, last_seen=now)
        usage = _traffic_usage(day, session.user, event.counts, Counts())
    elif event.kind is Kind.PEER_TRAFFIC:
        nxt = replace(session, peer=session.peer + event.counts, last_seen=now)
        usage = _traffic_usage(day, session.user, Counts(), event.counts)
    elif event.kind is Kind.TOTAL:
        extra = (event.counts - session.client).clamp()
        nxt = replace(session, client=session.client + extra, client_closed=True, deleted=True, last_seen=now)
        usage = _traffic_usage(day, session.user, extra, Counts())
    else:
        extra = (event.counts - session.peer).clamp()
        nxt = replace(session, peer=session.peer + extra, peer_closed=True, deleted=True, last_seen=now)
        usage = _traffic_usage(day, session.user, Counts(), extra)
    if current is None:  # first sight of a session whose `new` the meter missed: it started all the same
        usage = replace(usage, started=1)
    if nxt.complete:
        gone, ended = _end(nxt, now)
        return Step(remove=(gone,), usage=(usage, ended))
    return Step(upsert=(nxt,), usage=(usage,))


def _status(current: Session | None, event: Event, key: str, day: str, now: float) -> Step:
    status = event.status or ""
    if status.startswith("new"):
        usages: list[Usage] = [Usage(day, event.user_id, started=1)]
        if current is not None:  # the id was reused: coturn restarted and the old session was lost
            usages.append(_end(current, now)[1])
        return Step(upsert=(Session(key, event.user_id, now, last_seen=now),), usage=tuple(usages))
    if status == "deleted":
        session = current or Session(key, event.user_id, now)
        return Step(upsert=(replace(session, deleted=True, last_seen=now),))
    if current is not None:  # `refreshed …`
        return Step(upsert=(replace(current, last_seen=now),))
    return Step()


def reconcile(sessions: Iterable[Session], live_keys: set[str], now: float, grace: float = GRACE) -> Step:
    """Close sessions coturn no longer knows (restart wiped their status keys, or totals never came)."""
    removed: list[str] = []
    usage: list[Usage] = []
    for session in sessions:
        stale = now - session.last_seen > grace
        if stale and (session.deleted or session.key not in live_keys):
            key, ended = _end(session, now)
            removed.append(key)
            usage.append(ended)
    return Step(remove=tuple(removed), usage=tuple(usage))


def live_key(status_key: str) -> str | None:
    """`turn/realm/R/user/U/allocation/A/status` → the session key `R/U/A`."""
    prefix, suffix = "turn/realm/", "/status"
    if not (status_key.startswith(prefix) and status_key.endswith(suffix)):
        return None
    realm, _, rest = status_key[len(prefix) : -len(suffix)].partition("/user/")
    username, _, alloc = rest.rpartition("/allocation/")
    return f"{realm}/{username}/{alloc}" if realm and username and alloc else None
