"""ICE servers for a client: its region's healthy TURN nodes and a fresh TURN REST credential.

Region choice: `?region=` query, else the token's `region` claim, else `signaling.default_region`,
else the first configured region. Credentials follow draft-uberti-behave-turn-rest-00 §2.2.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from signaling.keysource import KeySource
from turnkit import credentials, health, nodes
from turnkit.config import Config
from turnkit.errors import ConfigError
from turnkit.health import NodeHealth
from turnkit.meter import gate
from turnkit.nodes import Node

log = logging.getLogger(__name__)

#: How long a region's node list (which may come from a provisioning state file) is reused.
NODES_TTL = 10.0


class UnknownRegion(Exception):
    """A client asked for a region that is not configured."""


@dataclass(frozen=True)
class IceSet:
    """RTCIceServer[] with the credential inside it, and when that credential expires."""

    servers: list[dict[str, object]] = field(repr=False)
    ttl: int
    expires_at: int
    credential: credentials.TurnCredential
    turn_urls: list[str]
    turn: str = "ok"  # or `quota-exceeded` / `region-over-budget` (turnkit.meter.quota.Turn): STUN only


class NoHealth:
    """Null health source: every node counts as healthy."""

    def current(self) -> Mapping[str, NodeHealth]:
        return {}


class FileHealth:
    """The health file `turnkit probe` writes, re-read when its mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: int | None = None
        self._health: dict[str, NodeHealth] = {}

    def current(self) -> Mapping[str, NodeHealth]:
        try:
            stamp: int | None = os.stat(self.path).st_mtime_ns
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            self._health = health.read_file(self.path) if stamp is not None else {}
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
        if region is None:
            return []
        every = self._region_nodes(region)
        current = self.health.current()
        ok = health.healthy(every, current)
        if every and not ok:
            log.warning("every node of region %s is marked unhealthy or draining; offering them anyway", region)
            return health.serving(every, current) or every
        return ok

    def issue(self, user: str, region: str | None) -> IceSet:
        """A fresh credential for `user` and the ICE servers of `region`."""
        ttl = self.cfg.project.ttl
        cred = credentials.issue(user, self.keys.current().primary.value, int(self.clock()), ttl)
        self.on_issue()
        picked = self.healthy_nodes(region)
        decision = self.quota.decide(cred.username.split(":", 1)[1], region)  # the user id as the meter sees it
        relays = picked if decision.region == region else self.healthy_nodes(decision.region)
        stun, turn = nodes.stun_urls(self.cfg, picked), nodes.turn_urls(self.cfg, relays)
        ice = credentials.ice_servers(cred, stun, turn)
        return IceSet(ice, ttl, cred.expires_at, cred, turn, decision.turn.value)

    def turn_rest(self, user: str, region: str | None) -> dict[str, object]:
        """The draft-uberti-behave-turn-rest-00 §2.2 response body."""
        ice = self.issue(user, region)
        return {
            "username": ice.credential.username,
            "password": ice.credential.password,
            "ttl": ice.ttl,
            "uris": ice.turn_urls,
        }
