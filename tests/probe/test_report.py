"""Report formats (Prometheus textfile, JSON, table, node health) and the SQLite history."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from turnkit.probe import history, report
from turnkit.probe.history import HistoryError
from turnkit.probe.result import CheckResult, Failure, Status, Transport


def result(
    check: str,
    status: Status = Status.PASS,
    node: str = "turn-1",
    transport: Transport = Transport.UDP,
    **details: object,
) -> CheckResult:
    failure = Failure.UNAUTHORIZED if status is Status.FAIL else None
    reason = "allocate: 401 Unauthorized" if status is Status.FAIL else ""
    return CheckResult(check, "eu", node, transport, status, 0.012, failure, reason, dict(details))


RESULTS = [
    result("relay", rtt_p50=0.0012, rtt_max=0.004, loss=0.1, relayed="203.0.113.5:50000"),
    result("allocate", transport=Transport.TLS, cert_days=12.5),
    result("allocate", Status.FAIL, node="turn-2"),
    result("expired", Status.SKIP, node="turn-2"),
]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_prometheus_textfile_parses_with_expected_series() -> None:
    text = report.prometheus(RESULTS, now=1_800_000_000)
    got = samples(text)
    labels = (("check", "relay"), ("node", "turn-1"), ("region", "eu"), ("transport", "udp"))
    assert got[("turnkit_probe_success", labels)] == 1
    assert got[("turnkit_probe_duration_seconds", labels)] == pytest.approx(0.012)
    assert got[("turnkit_probe_rtt_seconds", tuple(sorted((*labels, ("stat", "p50")))))] == pytest.approx(0.0012)
    assert got[("turnkit_probe_rtt_seconds", tuple(sorted((*labels, ("stat", "max")))))] == pytest.approx(0.004)
    assert got[("turnkit_probe_loss_ratio", labels)] == pytest.approx(0.1)
    tls = (("check", "allocate"), ("node", "turn-1"), ("region", "eu"), ("transport", "tls"))
    assert got[("turnkit_probe_cert_expiry_days", tls)] == 12.5
    failed = (("check", "allocate"), ("node", "turn-2"), ("region", "eu"), ("transport", "udp"))
    assert got[("turnkit_probe_success", failed)] == 0
    assert got[("turnkit_probe_last_run_timestamp_seconds", ())] == 1_800_000_000
    assert not any(dict(k[1]).get("check") == "expired" for k in got)  # skipped: not exported
    assert "# TYPE turnkit_probe_success gauge" in text


def test_node_health_fails_a_node_with_any_failed_check() -> None:
    health = report.node_health(RESULTS, now=1_800_000_000)
    assert health["eu/turn-1"].ok and health["eu/turn-1"].failed == ()
    assert not health["eu/turn-2"].ok and health["eu/turn-2"].failed == ("allocate/udp",)
    assert health["eu/turn-2"].checked_at == 1_800_000_000
    url_only = CheckResult("stun", "", "198.51.100.7", Transport.UDP, Status.FAIL, 0.1, Failure.TIMEOUT)
    assert report.node_health([url_only], 1) == {}  # ad-hoc URLs are not nodes signaling hands out


def test_json_and_table() -> None:
    doc = report.to_json(RESULTS, started_at=5)
    assert doc["ok"] is False and doc["counts"] == {"pass": 2, "fail": 1, "skip": 1}
    assert [(r["node"], r["transport"], r["check"]) for r in doc["results"]] == [
        ("turn-1", "udp", "relay"), ("turn-1", "tls", "allocate"), ("turn-2", "udp", "allocate"), ("turn-2", "udp", "expired"),
    ]  # fmt: skip
    assert doc["results"][2]["failure"] == "401"
    rows = report.table_rows(RESULTS)
    assert rows[0] == (
        "eu/turn-1",
        "udp",
        "relay",
        "✓",
        "12.0 ms",
        "rtt p50 1.2 ms max 4.0 ms, loss 10%, relayed 203.0.113.5:50000",
    )
    assert rows[1][5] == "cert 12 days"  # rounds half to even
    assert rows[2][3:] == ("✗", "12.0 ms", "[401] allocate: 401 Unauthorized")
    assert rows[3][3] == "–"


def test_history_appends_and_summarises(tmp_path: Path) -> None:
    path = tmp_path / "state" / history.FILE_NAME
    day = 86400 * 20_000
    history.append(path, day + 10, RESULTS)
    history.append(path, day + 20, [result("relay", rtt_p50=0.003, rtt_max=0.003), result("allocate", Status.FAIL)])
    history.append(path, day + 86400, [result("relay", rtt_p50=0.002, rtt_max=0.002)])
    periods = history.summary(path, since=0)
    assert [(p.node, p.period, p.runs, p.passed, p.failed) for p in periods] == [
        ("turn-1", day, 2, 3, 1),
        ("turn-1", day + 86400, 1, 1, 0),
        ("turn-2", day, 1, 0, 1),
    ]
    assert periods[0].pass_rate == 0.75
    assert periods[0].relay_rtt_p50 == pytest.approx(0.0021) and periods[0].relay_rtt_worst == pytest.approx(0.003)
    assert periods[0].to_dict()["pass_rate"] == 0.75
    assert history.summary(path, since=day + 86400)[0].period == day + 86400
    assert history.summary(tmp_path / "missing.sqlite", since=0) == []


def test_history_rejects_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "probe-history.sqlite"
    path.write_text("not sqlite at all " * 100)
    with pytest.raises(HistoryError, match="not a probe history database"):
        history.append(path, 1, RESULTS)
