"""Quotas and budgets: the pure decision, and the signaling service handing out STUN only."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import httpx
import pytest

from signaling.ice import IceProvider, NoHealth
from signaling.keysource import KeySource
from tests.helpers.signaling import StartServer, make_token, redis_running, write_config
from turnkit.meter import ledger
from turnkit.meter.central import Central
from turnkit.meter.cost import GB
from turnkit.meter.gate import CentralQuota
from turnkit.meter.quota import Decision, Turn, decide


@pytest.mark.parametrize(
    ("region", "user_egress", "spend", "fallback", "expected"),
    [
        ("eu", 0, {}, None, Decision(Turn.OK, "eu")),
        ("eu", 2 * GB, {}, None, Decision(Turn.QUOTA_EXCEEDED, None)),
        ("eu", GB - 1, {"eu": 99.0}, None, Decision(Turn.OK, "eu")),
        ("eu", 0, {"eu": 100.0}, None, Decision(Turn.REGION_OVER_BUDGET, None)),
        ("eu", 0, {"eu": 100.0}, "us", Decision(Turn.OK, "us")),
        ("eu", 0, {"eu": 100.0, "us": 50.0}, "us", Decision(Turn.REGION_OVER_BUDGET, None)),
        ("asia", 0, {"asia": 1e9}, None, Decision(Turn.OK, "asia")),  # no budget set: no limit
        (None, 0, {}, None, Decision(Turn.OK, None)),
    ],
)
def test_decide(
    region: str | None, user_egress: int, spend: dict[str, float], fallback: str | None, expected: Decision
) -> None:
    assert decide(region, user_egress, 1.0, spend, {"eu": 100.0, "us": 50.0}, fallback) == expected


def test_zero_quota_means_unlimited() -> None:
    assert decide("eu", 10**15, 0.0, {}, {}) == Decision(Turn.OK, "eu")


def seed(store: Central, user: str, egress: int) -> None:
    day = dt.datetime.now(dt.UTC).date().isoformat()
    store.apply("turn-1", "local", f"seed-{user}", [ledger.Usage(day, user, client_tx=egress)])


def has_turn(servers: list[dict[str, object]]) -> bool:
    return any("credential" in s for s in servers)


async def test_user_over_quota_gets_stun_only_over_http_and_websocket(
    start_server: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with redis_running(tmp_path / "central") as central:
        seed(Central.from_url(central.url), "alice", 5000)  # over a 1 kB quota
        monkeypatch.setenv("TURNKIT_METER_CENTRAL_URL", central.url)
        async with start_server(quotas={"user_monthly_gb": 0.000001}) as srv:
            async with httpx.AsyncClient() as http:
                for user, relays in (("alice", False), ("carol", True)):
                    auth = {"Authorization": f"Bearer {make_token(user)}"}
                    doc = (await http.get(f"{srv.http}/api/ice-servers", headers=auth)).json()
                    assert doc["iceServers"] and has_turn(doc["iceServers"]) is relays
                    assert doc.get("turn") == (None if relays else "quota-exceeded")
            async with srv.client("alice") as a:
                await a.send(type="ice-servers")
                msg = await a.expect("ice-servers")
                urls = [u for s in msg["iceServers"] for u in s["urls"]]
                assert urls == ["stun:127.0.0.1:3478"]
                assert msg["turn"] == "quota-exceeded"
            assert srv.server.ice.issue("alice", "local").turn == "quota-exceeded"
            assert srv.server.ice.issue("carol", "local").turn == "ok"


def test_region_over_budget_hands_out_no_relays(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, quotas__region_monthly_budget={"local": 0.01}, cost__per_gb={"local": 1.0})
    with redis_running(tmp_path / "central") as central:
        store = Central.from_url(central.url)
        ice = IceProvider(cfg, KeySource(cfg.secrets_path), NoHealth(), quota=CentralQuota(cfg, store, ttl=0))
        assert ice.issue("dave", "local").turn == "ok"
        seed(store, "erin", 20_000_000)  # 0.02 GB at $1/GB: over the $0.01 budget
        over = ice.issue("dave", "local")
        assert (over.turn, over.turn_urls, has_turn(over.servers)) == ("region-over-budget", [], False)
        assert over.servers == [{"urls": ["stun:127.0.0.1:3478"]}]


def test_gate_fails_open_and_backs_off_when_the_store_is_down(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, quotas={"user_monthly_gb": 0.000001})
    now = [1_764_000_000.0]
    refused = Central.from_url("redis://127.0.0.1:1/0", timeout=1.0)  # nothing listens on port 1
    gate = CentralQuota(cfg, refused, clock=lambda: now[0], ttl=30)
    assert gate.decide("alice", "local") == Decision(Turn.OK, "local")
    assert gate._down_until == now[0] + 30  # the next 30 s of requests do not wait on the store
    assert gate.decide("bob", "local") == Decision(Turn.OK, "local")


@pytest.mark.parametrize(
    ("url", "ca", "message"),
    [
        ("rediss://usage:pw@127.0.0.1:1/0", "missing.pem", "cannot read the CA file"),
        ("rediss://usage:pw@127.0.0.1:1/0", ".", "cannot read the CA file"),  # a directory
        ("redis://usage:pw@127.0.0.1:1/0", "ca.pem", "a CA file needs a rediss:// (TLS) URL"),
    ],
)
def test_a_bad_store_ca_is_an_error_at_start_not_quotas_quietly_off(
    tmp_path: Path, url: str, ca: str, message: str
) -> None:
    """Before, redis-py met the CA only at the first connection: a TypeError (plain URL) or an OSError
    the gate took for an outage, so every answer went out without quotas."""
    from turnkit.errors import TurnkitError
    from turnkit.meter.gate import CA_ENV, from_environment

    cfg = write_config(tmp_path, quotas={"user_monthly_gb": 0.000001})
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(TurnkitError, match=re.escape(message)) as caught:
        from_environment(cfg, {cfg.meter.central_url_env: url, CA_ENV: str(tmp_path / ca)})
    assert "pw" not in str(caught.value)
