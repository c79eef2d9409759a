"""Pure numbers for benchmarks: medians, percentiles, ratios and target verdicts. No I/O."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def median(values: Sequence[float]) -> float:
    """Median of the rounds; NaN when nothing was measured."""
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted samples; NaN when empty."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile: q must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio(a: float, b: float) -> float:
    """a / b, NaN if either side is missing or b is zero."""
    if math.isnan(a) or math.isnan(b) or b == 0:
        return math.nan
    return a / b


#: Comparison name → predicate(measured, limit).
COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda value, limit: value >= limit,
    "<=": lambda value, limit: value <= limit,
}


@dataclass(frozen=True)
class Target:
    """A goal from the issues, e.g. relay msgs/s ratio `>= 1.5`."""

    metric: str
    op: str
    limit: float
    unit: str = ""
    source: str = ""

    def met(self, value: float) -> bool | None:
        """True/False, or None when the figure could not be measured."""
        if math.isnan(value):
            return None
        return COMPARE[self.op](value, self.limit)

    def describe(self) -> str:
        op = {">=": "≥", "<=": "≤"}[self.op]
        return f"{op} {fmt(self.limit)}{(' ' + self.unit) if self.unit else ''}"


@dataclass(frozen=True)
class Verdict:
    """A measured figure next to its target."""

    target: Target
    value: float
    detail: str = ""

    @property
    def met(self) -> bool | None:
        return self.target.met(self.value)

    @property
    def mark(self) -> str:
        return {True: "✓", False: "✗", None: "–"}[self.met]


def fmt(value: float, digits: int = 3) -> str:
    """Numbers for tables: thousands with separators, small values with `digits` significant digits."""
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == int(value) and abs(value) >= 10:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"
