"""Prometheus metrics of one server, on its own CollectorRegistry.

The hot path bumps plain ints in `Stats`; they become metric families only when `/metrics` is scraped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from signaling.protocol import RELAY_FIELDS, Code

PREFIX = "turnkit_signaling"


class Stats:
    """Counters the server increments; cheap enough for every relayed message."""

    __slots__ = (
        "closed",
        "connections_total",
        "credentials",
        "errors",
        "queue_dropped",
        "refused",
        "relayed",
        "resumes",
    )

    def __init__(self) -> None:
        self.relayed: dict[str, int] = dict.fromkeys(RELAY_FIELDS, 0)
        self.errors: dict[str, int] = dict.fromkeys((c.value for c in Code), 0)
        self.credentials = 0
        self.connections_total = 0
        self.refused: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self.resumes: Counter[str] = Counter()
        self.queue_dropped = 0


class Metrics:
    """A collector over `Stats` plus live gauges, registered in a private registry."""

    def __init__(self, stats: Stats, gauges: Callable[[], dict[str, tuple[str, float]]]) -> None:
        self.stats = stats
        self.gauges = gauges
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        for name, (text, value) in self.gauges().items():
            yield GaugeMetricFamily(f"{PREFIX}_{name}", text, value=value)
        relayed = CounterMetricFamily(f"{PREFIX}_relayed_messages", "Messages relayed, by type.", labels=["type"])
        for kind, n in s.relayed.items():
            relayed.add_metric([kind], n)
        yield relayed
        errors = CounterMetricFamily(f"{PREFIX}_errors", "Error frames sent, by code.", labels=["code"])
        for code, n in s.errors.items():
            errors.add_metric([code], n)
        yield errors
        yield CounterMetricFamily(f"{PREFIX}_credentials_issued", "TURN credentials issued.", value=s.credentials)
        yield CounterMetricFamily(
            f"{PREFIX}_connections_accepted", "WebSocket connections accepted.", value=s.connections_total
        )
        refused = CounterMetricFamily(f"{PREFIX}_refused", "Requests refused, by reason.", labels=["reason"])
        for reason, n in sorted(s.refused.items()):
            refused.add_metric([reason], n)
        yield refused
        closed = CounterMetricFamily(
            f"{PREFIX}_disconnects", "Connections the server closed, by reason.", labels=["reason"]
        )
        for reason, n in sorted(s.closed.items()):
            closed.add_metric([reason], n)
        yield closed
        resumes = CounterMetricFamily(f"{PREFIX}_resumes", "Session resume attempts, by outcome.", labels=["outcome"])
        for outcome in ("ok", "refused"):
            resumes.add_metric([outcome], s.resumes[outcome])
        yield resumes
        yield CounterMetricFamily(
            f"{PREFIX}_resume_queue_dropped",
            "Frames for parked (resumable) members dropped because their queue was full.",
            value=s.queue_dropped,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
