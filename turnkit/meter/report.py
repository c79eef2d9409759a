"""`turnkit usage` figures from central rows: grouping, cost, projection and output formats. Pure."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from turnkit.errors import InputError
from turnkit.meter import cost
from turnkit.meter.central import Row

#: --by choice → the row attribute that names a group.
GROUPS: dict[str, Callable[[Row], str]] = {
    "user": lambda r: r.user,
    "node": lambda r: f"{r.region}/{r.node}",
    "region": lambda r: r.region,
    "day": lambda r: r.day,
}

_RELATIVE = re.compile(r"^(\d{1,4})d$")


@dataclass(frozen=True)
class Line:
    key: str
    bytes_up: int
    bytes_down: int
    egress_bytes: int
    sessions: int
    relay_minutes: float
    cost: float


def parse_since(value: str, today: dt.date) -> dt.date:
    """`7d` (the last 7 days, today included) or an ISO date."""
    m = _RELATIVE.match(value)
    if m:
        return today - dt.timedelta(days=max(int(m[1]) - 1, 0))
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(f"--since: expected `7d` or a date like 2026-11-01, got {value[:40]!r}") from None


def lines(rows: Sequence[Row], by: str, price: Callable[[str], float], top: int | None = None) -> list[Line]:
    """One line per group, largest egress first."""
    acc: dict[str, list[float]] = {}
    for r in rows:
        egress = r.get("client_tx") + r.get("peer_tx")
        a = acc.setdefault(GROUPS[by](r), [0, 0, 0, 0, 0, 0.0])
        a[0] += r.get("client_rx")
        a[1] += r.get("client_tx")
        a[2] += egress
        a[3] += r.get("started")
        a[4] += r.get("relay_seconds")
        a[5] += cost.cost(egress, price(r.region))
    out = [
        Line(k, int(a[0]), int(a[1]), int(a[2]), int(a[3]), round(a[4] / 60, 2), round(a[5], 4)) for k, a in acc.items()
    ]
    out.sort(key=lambda ln: (-ln.egress_bytes, ln.key))
    return out[:top] if top else out


def month_projection(rows: Sequence[Row], price: Callable[[str], float], now: dt.datetime) -> dict[str, float]:
    """This month's spend so far and projected, over the given rows (those of this month count)."""
    month = now.strftime("%Y-%m")
    spent = sum(cost.cost(r.get("client_tx") + r.get("peer_tx"), price(r.region)) for r in rows if r.day[:7] == month)
    return {"month": month, "spent": round(spent, 4), "projected": round(cost.projection(spent, now), 4)}  # type: ignore[dict-item]


def to_json(by: str, items: Sequence[Line], month: dict[str, float]) -> dict[str, object]:
    return {"by": by, "rows": [asdict(i) for i in items], "month": month}


def to_csv(items: Sequence[Line]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["key", "bytes_up", "bytes_down", "egress_bytes", "sessions", "relay_minutes", "cost"])
    for i in items:
        writer.writerow([i.key, i.bytes_up, i.bytes_down, i.egress_bytes, i.sessions, i.relay_minutes, i.cost])
    return buf.getvalue()


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return str(n)


def prometheus(rows: Sequence[Row], price: Callable[[str], float], now: dt.datetime) -> str:
    """The central aggregate as a node_exporter textfile: this month's egress, spend and projection per region."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    month = now.strftime("%Y-%m")
    registry = CollectorRegistry()
    egress = Gauge(
        "turnkit_usage_month_egress_bytes", "Billed egress this month (central store)", ["region"], registry=registry
    )
    spend = Gauge(
        "turnkit_usage_month_spend_dollars", "Estimated cost this month (central store)", ["region"], registry=registry
    )
    projected = Gauge(
        "turnkit_usage_month_projected_dollars",
        "This month's cost at the rate so far (central store)",
        ["region"],
        registry=registry,
    )
    per_region: dict[str, int] = {}
    for r in rows:
        if r.day[:7] == month:
            per_region[r.region] = per_region.get(r.region, 0) + r.get("client_tx") + r.get("peer_tx")
    for region, total in sorted(per_region.items()):
        dollars = cost.cost(total, price(region))
        egress.labels(region=region).set(total)
        spend.labels(region=region).set(dollars)
        projected.labels(region=region).set(cost.projection(dollars, now))
    return generate_latest(registry).decode()
