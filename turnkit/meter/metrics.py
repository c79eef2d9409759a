"""The meter's Prometheus metrics: per node and region, never per user (cardinality)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from turnkit.meter.ledger import Usage

#: Usage field → `direction` label of turnkit_meter_relayed_bytes_total.
DIRECTIONS = {"client_rx": "from_client", "client_tx": "to_client", "peer_rx": "from_peer", "peer_tx": "to_peer"}


class MeterMetrics:
    def __init__(self, node: str, region: str, budget: float) -> None:
        self.registry = CollectorRegistry()
        self.labels = {"node": node, "region": region}
        r, lab = self.registry, ("node", "region")
        self.live = Gauge("turnkit_meter_live_allocations", "Allocations open on the node", lab, registry=r)
        self.bytes = Counter(
            "turnkit_meter_relayed_bytes", "Bytes relayed, by direction", (*lab, "direction"), registry=r
        )
        self.started = Counter("turnkit_meter_sessions_started", "Allocations started", lab, registry=r)
        self.ended = Counter("turnkit_meter_sessions_ended", "Allocations ended", lab, registry=r)
        self.spend = Gauge("turnkit_meter_spend_month_dollars", "Estimated egress cost this month", lab, registry=r)
        self.projected = Gauge(
            "turnkit_meter_projected_month_spend_dollars", "This month's cost at the rate so far", lab, registry=r
        )
        self.budget = Gauge(
            "turnkit_meter_region_budget_dollars", "[quotas] region_monthly_budget", ["region"], registry=r
        )
        self.buffered = Gauge(
            "turnkit_meter_buffered_batches", "Batches waiting for the central store", lab, registry=r
        )
        self.budget.labels(region=region).set(budget)

    def count(self, usage: Usage) -> None:
        for field, direction in DIRECTIONS.items():
            amount = getattr(usage, field)
            if amount:
                self.bytes.labels(**self.labels, direction=direction).inc(amount)
        if usage.started:
            self.started.labels(**self.labels).inc(usage.started)
        if usage.ended:
            self.ended.labels(**self.labels).inc(usage.ended)
