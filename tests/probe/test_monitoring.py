"""Alert rules and the Grafana dashboard match the metrics `turnkit probe --prometheus` writes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from turnkit.probe import report
from turnkit.probe.result import CheckResult, Failure, Status, Transport

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
RULES = MONITORING / "turnkit-alerts.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"

BROKEN = [
    CheckResult("allocate", "eu", "turn-1", Transport.UDP, Status.FAIL, 5.0, Failure.TIMEOUT, "allocate: timed out"),
    CheckResult("allocate", "eu", "turn-1", Transport.TLS, Status.PASS, 0.02, details={"cert_days": 9.5}),
    CheckResult(
        "relay", "eu", "turn-2", Transport.UDP, Status.PASS, 0.5, details={"rtt_p50": 0.3, "rtt_max": 0.4, "loss": 0.1}
    ),
    CheckResult(
        "relay",
        "eu",
        "turn-3",
        Transport.UDP,
        Status.PASS,
        0.01,
        details={"rtt_p50": 0.001, "rtt_max": 0.002, "loss": 0.0},
    ),
]


def meter_names() -> set[str]:
    """What `turnkit meter run` exports (tests/meter/test_metrics.py checks its rules)."""
    from tests.meter.test_metrics import meter_names as names

    return names()


def exported_names() -> set[str]:
    return {f.name for f in text_string_to_metric_families(report.prometheus(BROKEN, 0))}


def test_promtool_check_rules() -> None:
    proc = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 5 rules found" in proc.stdout


def _series(text: str, steps: int) -> list[dict[str, str]]:
    """The probe's own textfile as promtool input series, the same value at every step."""
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out.append({"series": f"{s.name}{{{labels}}}", "values": f"{s.value:g}x{steps}"})
    return out


def _alerts(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def test_alerts_fire_on_what_the_probe_exports(tmp_path: Path) -> None:
    """promtool unit test: the broken run fires exactly the expected alerts, the healthy node none."""
    steps = 3 * 24 * 6  # one sample per 10 minutes for three days
    labels = {"region": "eu", "transport": "udp"}
    summaries = {
        "TurnkitProbeFailing": "TURN probe `allocate` fails on eu/turn-1 over udp",
        "TurnkitCertExpiringSoon": "TURN/TLS certificate of eu/turn-1 expires in 9.5 days",
        "TurnkitRelayRttHigh": "Relay round trip p50 on eu/turn-2 (udp) is 300ms",
        "TurnkitRelayPacketLoss": "Relay round trip on eu/turn-2 (udp) lost 10% of packets",
        "TurnkitProbeStale": "turnkit probe results are 2d 12h 0m 0s old",
    }
    alert_labels = {
        "TurnkitProbeFailing": {**labels, "node": "turn-1", "check": "allocate", "severity": "critical"},
        "TurnkitCertExpiringSoon": {
            **labels,
            "transport": "tls",
            "node": "turn-1",
            "check": "allocate",
            "severity": "warning",
        },
        "TurnkitRelayRttHigh": {**labels, "node": "turn-2", "check": "relay", "stat": "p50", "severity": "warning"},
        "TurnkitRelayPacketLoss": {**labels, "node": "turn-2", "check": "relay", "severity": "warning"},
        "TurnkitProbeStale": {"severity": "warning"},
    }
    rules = {r["alert"]: r for r in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]}

    def expected(name: str) -> dict[str, object]:
        annotations = {"summary": summaries[name]}
        if "description" in rules[name]["annotations"]:
            annotations["description"] = rules[name]["annotations"]["description"].replace("{{ $labels.region }}", "eu")
        return {"exp_labels": alert_labels[name], "exp_annotations": annotations}

    alert_tests = [
        {"eval_time": "10m", "alertname": name, "exp_alerts": [] if name == "TurnkitProbeStale" else [expected(name)]}
        for name in summaries
    ]
    alert_tests.append(
        {"eval_time": "2d12h", "alertname": "TurnkitProbeStale", "exp_alerts": [expected("TurnkitProbeStale")]}
    )
    doc = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "10m",
                "input_series": _series(report.prometheus(BROKEN, 0), steps),
                "alert_rule_test": alert_tests,
            }
        ],
    }
    spec = tmp_path / "alerts_test.yml"
    spec.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(["promtool", "test", "rules", str(spec)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, _alerts(proc)
    assert "SUCCESS" in proc.stdout


def test_rules_only_use_exported_metrics() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    used = {m for r in rules for m in re.findall(r"turnkit_[a-z_]+", r["expr"])}
    assert used and used <= exported_names()


def test_grafana_dashboard_parses_and_uses_exported_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["uid"] and dash["schemaVersion"] >= 30
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"turnkit_[a-z_]+", e)}
    assert used == exported_names() | meter_names()  # every metric charted, nothing that does not exist
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert {"region", "node"} <= set(variables)
    assert all("$region" in e for e in exprs if "last_run" not in e)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
