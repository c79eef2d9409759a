"""The meter against real coturn 4.6.1 + redis-server statsdb + a TLS central Redis (issue 14 proof)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemons import Coturn, local_config, start_coturn
from tests.helpers import relay
from tests.meter import stack
from turnkit import config

SECRET = "meter-test-secret"
USERS = ("alice", "bob")
PACKETS = 5000  # 5 MB each way


@dataclass
class Rig:
    project: Path
    cfg: config.Config
    coturn: Coturn
    statsdb: stack.RedisServer
    central: stack.RedisServer
    ca: Path
    meter: stack.MeterProc

    @property
    def env(self) -> dict[str, str]:
        return stack.meter_env(self.statsdb, self.central)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    cfg = local_config(tmp_path, "\n[meter]\nflush_interval = 0.5\n")
    statsdb = stack.statsdb_redis(tmp_path)
    central, certs = stack.central_redis(tmp_path / "central")
    extra = {"coturn_statsdb_password": stack.STATSDB_PASSWORD, "coturn_statsdb_port": statsdb.port}
    coturn = start_coturn(cfg, [SECRET], tmp_path / "coturn", extra=extra)
    env = stack.meter_env(statsdb, central)
    meter = stack.MeterProc(tmp_path, env, certs.ca, tmp_path / "meter" / "buffer.sqlite", tmp_path / "meter.log")
    meter.start()
    rig = Rig(tmp_path, cfg, coturn, statsdb, central, certs.ca, meter)
    try:
        yield rig
    finally:
        meter.stop()
        rig.coturn.stop()
        central.stop()
        statsdb.stop()


def wait_usage(rig: Rig, user: str, sent: int, timeout: float = 30.0) -> dict[str, int]:
    """The user's row of `turnkit usage --json --by user` once the session has ended."""
    deadline = time.monotonic() + timeout
    row: dict[str, int] = {}
    while time.monotonic() < deadline:
        doc = stack.usage_json(rig.project, rig.env, rig.ca, "--by", "user", "--since", "1d")
        row = next((r for r in doc["rows"] if r["key"] == user), {})
        if relay.arrived(row, sent):
            return row
        time.sleep(0.5)
    return row


def assert_metered(rig: Rig, users: tuple[str, str], relayed: relay.Relayed) -> None:
    for user in users:
        relay.assert_metered(wait_usage(rig, user, relayed.sent), relayed)


async def test_usage_reports_relayed_bytes_per_user(rig: Rig) -> None:
    relayed = await relay.relay_both_ways(rig.coturn.port, SECRET, USERS, PACKETS)
    assert_metered(rig, USERS, relayed)
    doc = stack.usage_json(rig.project, rig.env, rig.ca, "--by", "node")
    assert [r["key"] for r in doc["rows"]] == ["local/turn-1"]
    metrics = httpx.get(f"http://127.0.0.1:{rig.meter.metrics_port}/metrics").text
    assert "alice" not in metrics and "bob" not in metrics
    samples = {
        (s.name, s.labels.get("direction")): s.value
        for f in text_string_to_metric_families(metrics)
        for s in f.samples
        if s.labels.get("node") == "turn-1"
    }
    to_peer = samples[("turnkit_meter_relayed_bytes_total", "to_peer")]
    assert abs(to_peer - 2 * relayed.sent) <= 2 * relayed.sent * relay.TOLERANCE
    assert samples[("turnkit_meter_sessions_ended_total", None)] == 2
    assert samples[("turnkit_meter_live_allocations", None)] == 0


async def test_meter_restart_mid_stream_neither_loses_nor_double_counts(rig: Rig) -> None:
    at = {1500: rig.meter.stop, 3000: rig.meter.start}
    relayed = await relay.relay_both_ways(rig.coturn.port, SECRET, USERS, PACKETS, at)
    assert len(rig.meter.starts) == 2
    assert_metered(rig, USERS, relayed)
    time.sleep(2)  # any late resend would show up now
    assert_metered(rig, USERS, relayed)


async def test_central_store_outage_delays_but_loses_nothing(rig: Rig) -> None:
    relayed = await relay.relay_both_ways(rig.coturn.port, SECRET, USERS, PACKETS, {1000: rig.central.stop})
    time.sleep(3)  # the meter tries and buffers while the store is down
    assert "central store unreachable" in rig.meter.log.read_text()
    rig.central.start()
    assert_metered(rig, USERS, relayed)


async def test_meter_keeps_working_across_coturn_and_statsdb_restarts(rig: Rig) -> None:
    extra = {"coturn_statsdb_password": stack.STATSDB_PASSWORD, "coturn_statsdb_port": rig.statsdb.port}
    rig.coturn.stop()
    rig.coturn = start_coturn(rig.cfg, [SECRET], rig.project / "coturn-2", extra=extra)
    relayed = await relay.relay_both_ways(rig.coturn.port, SECRET, ("carol", "dave"), PACKETS)
    assert_metered(rig, ("carol", "dave"), relayed)
    rig.statsdb.stop()
    rig.statsdb.start()
    rig.meter.wait_subscribed(2)  # the meter reconnected on its own
    # coturn reconnects on its own (`redis_reconnect: Re-connected to redis, async` in its log)
    relayed = await relay.relay_both_ways(rig.coturn.port, SECRET, ("erin", "frank"), PACKETS)
    assert_metered(rig, ("erin", "frank"), relayed)
    assert len(rig.meter.starts) == 1
    assert "Re-connected to redis" in rig.coturn.log_text()
