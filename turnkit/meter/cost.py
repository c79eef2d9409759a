"""Estimated relay cost: billed egress × $/GB of the region, and the month's linear projection. Pure."""

from __future__ import annotations

import calendar
import datetime as dt

from turnkit.config import DEFAULT_EGRESS_PER_GB, Config

GB = 1_000_000_000  # providers bill decimal gigabytes


def price_per_gb(cfg: Config, region: str) -> float:
    """`[cost] per_gb.<region>`, else the provider's documented default, else 0."""
    if region in cfg.cost.per_gb:
        return cfg.cost.per_gb[region]
    provider = cfg.regions[region].provider if region in cfg.regions else ""
    return DEFAULT_EGRESS_PER_GB.get(provider, 0.0)


def cost(egress_bytes: int, per_gb: float) -> float:
    return egress_bytes / GB * per_gb


def month_fraction(now: dt.datetime) -> float:
    """How much of the current (UTC) month has passed, in (0, 1]."""
    days = calendar.monthrange(now.year, now.month)[1]
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return max((now - start).total_seconds() / (days * 86400), 1 / (days * 86400))


def projection(month_to_date: float, now: dt.datetime) -> float:
    """The month's total if the rest of it goes on at the rate so far."""
    return month_to_date / month_fraction(now)
