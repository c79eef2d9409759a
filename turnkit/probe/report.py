"""Probe results as a table, JSON, a node_exporter textfile and node health. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from turnkit.health import NodeHealth
from turnkit.probe.checks import CHECKS
from turnkit.probe.result import CheckResult, Status, Transport

LABELS = ("region", "node", "transport", "check")
_TRANSPORT_ORDER = {t: i for i, t in enumerate(Transport)}
_CHECK_ORDER = {c: i for i, c in enumerate(CHECKS)}
MARKS = {Status.PASS: "✓", Status.FAIL: "✗", Status.SKIP: "–"}


def ordered(results: Iterable[CheckResult]) -> list[CheckResult]:
    """Node by node, then transport (udp, tcp, tls), then check in CHECKS order."""
    return sorted(
        results,
        key=lambda r: (r.region, r.node, _TRANSPORT_ORDER[r.transport], _CHECK_ORDER.get(r.check, 99), r.url),
    )


def counts(results: Iterable[CheckResult]) -> dict[str, int]:
    out = {s.value: 0 for s in Status}
    for r in results:
        out[r.status.value] += 1
    return out


def all_ok(results: Iterable[CheckResult]) -> bool:
    return all(r.ok for r in results)


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.1f} ms"


def note(r: CheckResult) -> str:
    """The table's last column: why it failed or skipped, else the interesting numbers."""
    if r.status is not Status.PASS:
        return f"[{r.failure.value}] {r.reason}" if r.failure else r.reason
    d = r.details
    parts = []
    if "rtt_p50" in d:
        parts.append(f"rtt p50 {_ms(d['rtt_p50'])} max {_ms(d['rtt_max'])}")
    if "loss" in d:
        parts.append(f"loss {d['loss']:.0%}")
    if "relayed" in d:
        parts.append(f"relayed {d['relayed']}")
    if "reflexive" in d:
        parts.append(f"reflexive {d['reflexive']}")
    if "cert_days" in d:
        parts.append(f"cert {d['cert_days']:.0f} days")
    if "refused" in d:
        parts.append(f"{len(d['refused'])} peers refused" + (f", {len(d['skipped'])} skipped" if d["skipped"] else ""))
    if d.get("code") == 401:
        parts.append("401 as expected")
    return ", ".join(parts)


def table_rows(results: Iterable[CheckResult]) -> list[tuple[str, str, str, str, str, str]]:
    """(node, transport, check, mark, time, note) per result."""
    return [
        (
            f"{r.region}/{r.node}" if r.region else r.node,
            r.transport.value,
            r.check,
            MARKS[r.status],
            _ms(r.duration),
            note(r),
        )
        for r in ordered(results)
    ]


def to_json(results: Sequence[CheckResult], started_at: int) -> dict[str, Any]:
    return {
        "started_at": started_at,
        "ok": all_ok(results),
        "counts": counts(results),
        "results": [r.to_dict() for r in ordered(results)],
    }


def prometheus(results: Iterable[CheckResult], now: int) -> str:
    """node_exporter textfile-collector format; skipped checks export nothing."""
    registry = CollectorRegistry()
    success = Gauge("turnkit_probe_success", "1 if the probe check passed, 0 if it failed.", LABELS, registry=registry)
    duration = Gauge("turnkit_probe_duration_seconds", "How long the probe check took.", LABELS, registry=registry)
    cert = Gauge(
        "turnkit_probe_cert_expiry_days", "Days until the TURN TLS certificate expires.", LABELS, registry=registry
    )
    rtt = Gauge("turnkit_probe_rtt_seconds", "Round-trip time (stat=p50|max).", (*LABELS, "stat"), registry=registry)
    loss = Gauge("turnkit_probe_loss_ratio", "Relay round-trip packet loss (0..1).", LABELS, registry=registry)
    last = Gauge("turnkit_probe_last_run_timestamp_seconds", "When the probe last ran.", registry=registry)
    last.set(now)
    for r in results:
        if r.status is Status.SKIP:
            continue
        labels = (r.region, r.node, r.transport.value, r.check)
        success.labels(*labels).set(1 if r.ok else 0)
        duration.labels(*labels).set(r.duration)
        if "cert_days" in r.details:
            cert.labels(*labels).set(r.details["cert_days"])
        if "rtt_p50" in r.details:
            rtt.labels(*labels, "p50").set(r.details["rtt_p50"])
            rtt.labels(*labels, "max").set(r.details["rtt_max"])
        if "loss" in r.details:
            loss.labels(*labels).set(r.details["loss"])
    return generate_latest(registry).decode()


def node_health(results: Iterable[CheckResult], now: int) -> dict[str, NodeHealth]:
    """Latest health per configured node (`region/node`): failing if any of its checks failed."""
    failed: dict[str, set[str]] = {}
    for r in results:
        if not r.region:
            continue  # an ad-hoc URL, not a node signaling hands out
        bucket = failed.setdefault(f"{r.region}/{r.node}", set())
        if not r.ok:
            bucket.add(f"{r.check}/{r.transport.value}")
    return {k: NodeHealth(not v, now, tuple(sorted(v))) for k, v in failed.items()}
