"""Quota and budget decisions for an ICE server request. Pure: figures in, a decision out.

A user whose billed egress this month reached `[quotas] user_monthly_gb` gets STUN only
(`turn: quota-exceeded`); a region whose month-to-date spend reached its budget hands out no relays
(`turn: region-over-budget`), or those of `fallback_region` if that one is under its budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from turnkit.meter.cost import GB


class Turn(Enum):
    OK = "ok"
    QUOTA_EXCEEDED = "quota-exceeded"
    REGION_OVER_BUDGET = "region-over-budget"


@dataclass(frozen=True)
class Decision:
    turn: Turn
    region: str | None  # whose relays to hand out (None: none)


def over_budget(spend: float, budget: float) -> bool:
    return budget > 0 and spend >= budget


def decide(
    region: str | None,
    user_egress: int,
    user_monthly_gb: float,
    spend: dict[str, float],
    budgets: dict[str, float],
    fallback: str | None = None,
) -> Decision:
    """Which relays (if any) a user gets from `region` given this month's usage and spend."""
    if user_monthly_gb > 0 and user_egress >= user_monthly_gb * GB:
        return Decision(Turn.QUOTA_EXCEEDED, None)
    if region is None or not over_budget(spend.get(region, 0.0), budgets.get(region, 0.0)):
        return Decision(Turn.OK, region)
    if fallback and fallback != region and not over_budget(spend.get(fallback, 0.0), budgets.get(fallback, 0.0)):
        return Decision(Turn.OK, fallback)
    return Decision(Turn.REGION_OVER_BUDGET, None)
