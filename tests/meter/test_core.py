"""The meter's pure core: statsdb parsing, the ledger (deltas, totals at close, restarts), buffer batches."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from turnkit.meter import central, cost, events, ledger
from turnkit.meter.buffer import Buffer
from turnkit.meter.events import Counts, Kind

BASE = "turn/realm/example.test/user/1764003600:alice:x/allocation/000000000000000001"
T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC).timestamp()


def ev(kind: str, payload: str) -> events.Event:
    parsed = events.parse(f"{BASE}/{kind}", payload)
    assert parsed is not None
    return parsed


def traffic(rcvb: int, sentb: int) -> str:
    return f"rcvp={rcvb // 1000}, rcvb={rcvb}, sentp={sentb // 1000}, sentb={sentb}"


def run(sessions: dict[str, ledger.Session], evs: list[events.Event], now: float = T0) -> list[ledger.Usage]:
    out: list[ledger.Usage] = []
    for e in evs:
        step = ledger.step(sessions, e, now)
        for k in step.remove:
            sessions.pop(k)
        for s in step.upsert:
            sessions[s.key] = s
        out += step.usage
    return out


def total(usages: list[ledger.Usage], field: str) -> int:
    return sum(getattr(u, field) for u in usages)


def test_parse_real_coturn_messages() -> None:
    e = ev("traffic/peer", "rcvp=1, rcvb=100, sentp=5000, sentb=5000000")
    assert (e.kind, e.counts, e.user_id, e.alloc) == (
        Kind.PEER_TRAFFIC,
        Counts(1, 100, 5000, 5000000),
        "alice:x",
        "000000000000000001",
    )
    status = ev("status", "new lifetime=600, type=UDP, local=127.0.0.1:1, remote=127.0.0.1:2, ssl=NONE, cipher=NONE")
    assert status.kind is Kind.STATUS and status.status is not None and status.status.startswith("new")
    assert events.parse("turn/realm/r/user//allocation/001/traffic", "rcvp=0, rcvb=0, sentp=0, sentb=0") is None


@pytest.mark.parametrize(
    ("channel", "payload", "message"),
    [
        ("turn/realm/r/user/u/allocation/1/bogus", "x", "not a statsdb allocation channel: 'turn/realm/r/user/u/allocation/1/bogus'"),
        (f"{BASE}/traffic", "rcvp=1", "traffic payload not understood: 'rcvp=1'"),
    ],
)  # fmt: skip
def test_parse_rejects_foreign_messages(channel: str, payload: str, message: str) -> None:
    with pytest.raises(events.BadEvent) as err:
        events.parse(channel, payload)
    assert str(err.value) == message


def test_deltas_then_total_at_close_counts_once() -> None:
    sessions: dict[str, ledger.Session] = {}
    usages = run(
        sessions,
        [
            ev("status", "new lifetime=600"),
            ev("traffic", traffic(2000, 10)),
            ev("traffic", traffic(3000, 20)),
            ev("status", "deleted"),
            ev("total_traffic", traffic(5000, 30)),
            ev("total_traffic/peer", traffic(40, 5000)),
        ],
    )
    assert total(usages, "client_rx") == 5000
    assert total(usages, "client_tx") == 30
    assert total(usages, "peer_tx") == 5000
    assert (total(usages, "started"), total(usages, "ended")) == (1, 1)
    assert sessions == {}


def test_missed_deltas_are_made_up_by_the_total_and_never_go_negative() -> None:
    sessions: dict[str, ledger.Session] = {}
    usages = run(sessions, [ev("traffic", traffic(2000, 0)), ev("total_traffic", traffic(7000, 0))])
    assert total(usages, "client_rx") == 7000
    assert total(usages, "started") == 1  # first seen by its traffic
    more = run(sessions, [ev("total_traffic", traffic(100, 0)), ev("total_traffic/peer", traffic(0, 0))])
    assert total(more, "client_rx") == 0


def test_reused_allocation_id_after_a_coturn_restart_starts_a_new_session() -> None:
    sessions: dict[str, ledger.Session] = {}
    run(sessions, [ev("status", "new lifetime=600"), ev("traffic", traffic(100, 0))])
    usages = run(sessions, [ev("status", "new lifetime=600")], T0 + 60)
    assert (total(usages, "started"), total(usages, "ended"), total(usages, "relay_seconds")) == (1, 1, 60)
    assert next(iter(sessions.values())).client == Counts()


def test_reconcile_closes_sessions_coturn_forgot() -> None:
    sessions: dict[str, ledger.Session] = {}
    run(sessions, [ev("status", "new lifetime=600")])
    key = next(iter(sessions))
    assert ledger.live_key(f"{BASE}/status") == key
    assert ledger.reconcile(sessions.values(), {key}, T0 + 600).remove == ()
    assert ledger.reconcile(sessions.values(), set(), T0 + 10).remove == ()  # within the grace
    step = ledger.reconcile(sessions.values(), set(), T0 + 600)
    assert step.remove == (key,) and total(list(step.usage), "ended") == 1


def test_buffer_survives_reopen_and_batches_are_frozen(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = Buffer(path)
    sessions = buf.sessions()
    for e in (ev("status", "new lifetime=600"), ev("traffic", traffic(1000, 2000))):
        step = ledger.step(sessions, e, T0)
        buf.apply(step)
        sessions.update({s.key: s for s in step.upsert})
    assert buf.seal() == 1
    buf.apply(ledger.step(sessions, ev("traffic", traffic(5, 5)), T0))
    epoch = buf.epoch
    buf.close()
    again = Buffer(path)
    assert again.epoch == epoch and list(again.sessions()) == list(sessions)
    [(batch_id, rows)] = again.batches()
    assert batch_id == f"{epoch}:1"
    assert (rows[0].client_rx, rows[0].client_tx, rows[0].started) == (1000, 2000, 1)
    assert again.month_egress("2026-11") == 2005
    again.ack(batch_id)
    assert again.seal() == 2 and [b for b, _ in again.batches()] == [f"{epoch}:2"]


def test_central_increments_quote_users_and_track_month_egress() -> None:
    rows = [ledger.Usage("2026-11-30", "a|b", client_rx=1, client_tx=2, peer_tx=3, started=1)]
    assert central.increments("turn-1", "eu", rows) == [
        ("turnkit:usage:day:2026-11-30", "eu|turn-1|a%7Cb|client_rx", 1),
        ("turnkit:usage:day:2026-11-30", "eu|turn-1|a%7Cb|client_tx", 2),
        ("turnkit:usage:day:2026-11-30", "eu|turn-1|a%7Cb|peer_tx", 3),
        ("turnkit:usage:day:2026-11-30", "eu|turn-1|a%7Cb|started", 1),
        ("turnkit:usage:month:2026-11:user", "a%7Cb", 5),
        ("turnkit:usage:month:2026-11:region", "eu", 5),
    ]


def test_cost_and_projection() -> None:
    assert cost.cost(2 * cost.GB, 0.09) == pytest.approx(0.18)
    mid = dt.datetime(2026, 11, 16, tzinfo=dt.UTC)  # half of a 30-day month
    assert cost.projection(100.0, mid) == pytest.approx(200.0)
