"""ICE servers for a client: its region's healthy TURN nodes and a fresh TURN REST credential.

Region choice: `?region=` query, else the token's `region` claim, else `signaling.default_region`,
else the first configured region. Credentials follow draft-uberti-behave-turn-rest-00 §2.2.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from signaling.keysource import KeySource
from turnkit import credentials, health, nodes
from turnkit.config import Config
from turnkit.errors import ConfigError
from turnkit.health import NodeHealth
from turnkit.meter import gate
from turnkit.meter.quota import Turn
from turnkit.nodes import Node

log = logging.getLogger(__name__)

#: How long a region's node list (which may come from a provisioning state file) is reused.
NODES_TTL = 10.0
#: Seconds between looks at the health file.
HEALTH_RECHECK = 1.0
#: The health of a source that has none (one object, so the URL lists built for it stay valid).
NO_HEALTH: Mapping[str, NodeHealth] = MappingProxyType({})


class UnknownRegion(Exception):
    """A client asked for a region that is not configured."""


@dataclass(frozen=True)
class Offer:
    """A region's nodes and URLs as served now, built from one node list and one health mapping.

    The lists are shared by every IceSet issued from this offer: read them, never change them.
    """

    every: list[Node] = field(repr=False)
    health: Mapping[str, NodeHealth] = field(repr=False)
    nodes: list[Node]
    stun: list[str]
    turn: list[str]

    #: `{"iceServers":[…,{"urls":[…],"username":` — the `/api/ice-servers` body up to the credential.
    head: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        stun = b'{"urls":%s},' % json.dumps(self.stun).encode() if self.stun else b""
        object.__setattr__(
            self, "head", b'{"iceServers":[%s{"urls":%s,"username":' % (stun, json.dumps(self.turn).encode())
        )

    @property
    def stun_server(self) -> dict[str, object]:
        return {"urls": self.stun}


EMPTY_OFFER = Offer([], NO_HEALTH, [], [], [])


@dataclass(frozen=True)
class IceSet:
    """RTCIceServer[] with the credential inside it, and when that credential expires."""

    servers: list[dict[str, object]] = field(repr=False)
    ttl: int
    expires_at: int
    credential: credentials.TurnCredential
    turn_urls: list[str]
    offer: Offer = field(default=EMPTY_OFFER, repr=False)
    turn: str = "ok"  # or `quota-exceeded` / `region-over-budget` (turnkit.meter.quota.Turn): STUN only

    def document(self) -> bytes:
        """The `/api/ice-servers` JSON body; the URL lists were encoded once per offer, only the credential is new.

        An answer that is not the plain offer (over quota or budget) is encoded in full and says why
        it has no TURN servers (`"turn": "quota-exceeded"`).
        """
        if not self.offer.turn or self.turn != "ok":
            doc: dict[str, object] = {"iceServers": self.servers, "ttl": self.ttl, "expiresAt": self.expires_at}
            if self.turn != "ok":
                doc["turn"] = self.turn
            return json.dumps(doc).encode()
        cred = self.credential
        tail = b'}],"ttl":%d,"expiresAt":%d}\n' % (self.ttl, self.expires_at)
        return b"".join(
            (
                self.offer.head,
                json.dumps(cred.username).encode(),
                b',"credential":',
                json.dumps(cred.password).encode(),
                tail,
            )
        )


class NoHealth:
    """Null health source: every node counts as healthy."""

    def current(self) -> Mapping[str, NodeHealth]:
        return NO_HEALTH


class FileHealth:
    """The health file `turnkit probe` writes: looked at (a stat) at most once per `HEALTH_RECHECK` seconds,
    re-read when its mtime changes."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.clock = clock
        self._stamp: int | None = None
        self._checked: float | None = None
        self._health: Mapping[str, NodeHealth] = NO_HEALTH

    def current(self) -> Mapping[str, NodeHealth]:
        now = self.clock()
        if self._checked is not None and now - self._checked < HEALTH_RECHECK:
            return self._health
        self._checked = now
        try:
            stamp: int | None = os.stat(self.path).st_mtime_ns
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            self._health = health.read_file(self.path) if stamp is not None else NO_HEALTH
        return self._health


class SharedHealth:
    """Health a backend keeps up to date (the Redis backend polls `turnkit.health.REDIS_KEY`)."""

    def __init__(self) -> None:
        self.health: dict[str, NodeHealth] = {}

    def current(self) -> Mapping[str, NodeHealth]:
        return self.health


HealthSource = NoHealth | FileHealth | SharedHealth


class IceProvider:
    """Issues ICE server sets; all I/O (keyring file, health, node state) is behind injected sources."""

    def __init__(
        self,
        cfg: Config,
        keys: KeySource,
        health_source: HealthSource,
        clock: Callable[[], float] = time.time,
        on_issue: Callable[[], None] = lambda: None,
        quota: gate.QuotaSource | None = None,
    ) -> None:
        self.cfg = cfg
        self.keys = keys
        self.health = health_source
        self.clock = clock
        self.on_issue = on_issue
        self._nodes: dict[str, tuple[float, list[Node]]] = {}
        self.quota = quota if quota is not None else gate.from_environment(cfg, os.environ)
        self._offers: dict[str, Offer] = {}

    def region_for(self, requested: str | None, claim: str | None) -> str | None:
        """The region a client is served from; UnknownRegion for a bad explicit choice."""
        regions = self.cfg.regions
        if requested:
            if requested not in regions:
                raise UnknownRegion(f"unknown region `{requested[:64]}`")
            return requested
        for choice in (claim, self.cfg.signaling.default_region):
            if choice and choice in regions:
                return choice
        return next(iter(regions), None)

    def _region_nodes(self, region: str) -> list[Node]:
        now = time.monotonic()
        cached = self._nodes.get(region)
        if cached is not None and now - cached[0] < NODES_TTL:
            return cached[1]
        try:
            found = nodes.region_nodes(self.cfg, region)
        except ConfigError as exc:
            log.warning("region %s has no usable nodes: %s", region, exc)
            found = []
        self._nodes[region] = (now, found)
        return found

    def healthy_nodes(self, region: str | None) -> list[Node]:
        """The region's nodes minus those the latest probe marked failing and those draining (if none
        is left: every node not draining, else all of them)."""
        return [] if region is None else self._offer(region).nodes

    def _offer(self, region: str) -> Offer:
        """The region's URL lists, rebuilt only when its node list or the health mapping is a new one."""
        every = self._region_nodes(region)
        current = self.health.current()
        offer = self._offers.get(region)
        if offer is not None and offer.every is every and offer.health is current:
            return offer
        picked = health.healthy(every, current)
        if every and not picked:
            log.warning("every node of region %s is marked unhealthy or draining; offering them anyway", region)
            picked = health.serving(every, current) or every
        stun, turn = nodes.stun_urls(self.cfg, picked), nodes.turn_urls(self.cfg, picked)
        offer = self._offers[region] = Offer(every, current, picked, stun, turn)
        return offer

    def issue(self, user: str, region: str | None) -> IceSet:
        """A fresh credential for `user` and the ICE servers of `region`."""
        ttl = self.cfg.project.ttl
        cred = credentials.issue(user, self.keys.current().primary.value, int(self.clock()), ttl)
        self.on_issue()
        offer = EMPTY_OFFER if region is None else self._offer(region)
        decision = self.quota.decide(cred.username.split(":", 1)[1], region)  # the user id as the meter sees it
        if decision.region == region and decision.turn is Turn.OK:
            servers: list[dict[str, object]] = [offer.stun_server] if offer.stun else []
            if offer.turn:
                servers.append({"urls": offer.turn, "username": cred.username, "credential": cred.password})
            return IceSet(servers, ttl, cred.expires_at, cred, offer.turn, offer)
        # Over quota (no relays) or over budget (another region's relays, or none): the slow path.
        relays = EMPTY_OFFER if decision.region is None else self._offer(decision.region)
        ice = credentials.ice_servers(cred, offer.stun, relays.turn)
        return IceSet(ice, ttl, cred.expires_at, cred, relays.turn, turn=decision.turn.value)

    def turn_rest(self, user: str, region: str | None) -> dict[str, object]:
        """The draft-uberti-behave-turn-rest-00 §2.2 response body."""
        ice = self.issue(user, region)
        return {
            "username": ice.credential.username,
            "password": ice.credential.password,
            "ttl": ice.ttl,
            "uris": ice.turn_urls,
        }
