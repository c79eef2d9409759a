"""Quota and budget figures for the signaling service, read from the central usage store.

The decision itself is `quota.decide` (pure); this adds the reads and a short cache so an ICE
request costs at most one small Redis read per user and region every `ttl` seconds. If the store
cannot be read the gate fails open (relays are handed out) and logs it: a metering outage must not
take calls down.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping

import redis

from turnkit.config import Config
from turnkit.meter import cost, quota
from turnkit.meter.central import Central

log = logging.getLogger(__name__)

CA_ENV = "TURNKIT_METER_CENTRAL_CA"


class NoQuota:
    """Null gate: no quotas configured, or no store to read them from."""

    def decide(self, user: str, region: str | None) -> quota.Decision:
        return quota.Decision(quota.Turn.OK, region)


class CentralQuota:
    def __init__(self, cfg: Config, store: Central, clock: Callable[[], float] = time.time, ttl: float = 30.0) -> None:
        self.cfg, self.store, self.clock, self.ttl = cfg, store, clock, ttl
        self._users: dict[tuple[str, str], tuple[float, int]] = {}
        self._regions: tuple[float, str, dict[str, int]] | None = None
        self._down_until = 0.0  # after a failed read, skip the store for `ttl` (never block every request)

    def _user_egress(self, month: str, user: str, now: float) -> int:
        hit = self._users.get((month, user))
        if hit is None or now - hit[0] > self.ttl:
            hit = (now, self.store.month_user_egress(month, user))
            self._users[(month, user)] = hit
        return hit[1]

    def _spend(self, month: str, now: float) -> dict[str, float]:
        if self._regions is None or self._regions[1] != month or now - self._regions[0] > self.ttl:
            self._regions = (now, month, self.store.month_region_egress(month))
        return {r: cost.cost(b, cost.price_per_gb(self.cfg, r)) for r, b in self._regions[2].items()}

    def decide(self, user: str, region: str | None) -> quota.Decision:
        now = self.clock()
        month = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m")
        q = self.cfg.quotas
        if now < self._down_until:
            return quota.Decision(quota.Turn.OK, region)
        try:
            egress = self._user_egress(month, user, now) if q.user_monthly_gb else 0
            spend = self._spend(month, now) if q.region_monthly_budget else {}
        except (redis.RedisError, OSError) as exc:
            log.warning("usage store unreachable (%s); quotas not enforced for %gs", type(exc).__name__, self.ttl)
            self._down_until = now + self.ttl
            return quota.Decision(quota.Turn.OK, region)
        return quota.decide(region, egress, q.user_monthly_gb, spend, dict(q.region_monthly_budget), q.fallback_region)


QuotaSource = NoQuota | CentralQuota


def from_environment(cfg: Config, env: Mapping[str, str]) -> QuotaSource:
    """A CentralQuota when quotas are configured and the store URL is in the environment."""
    q = cfg.quotas
    url = env.get(cfg.meter.central_url_env)
    if not (q.user_monthly_gb or q.region_monthly_budget) or not url:
        return NoQuota()
    return CentralQuota(cfg, Central.from_url(url, env.get(CA_ENV), timeout=1.0))
