"""The meter's /metrics: names and labels (no per-user label), and the budget alerts under promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from turnkit.meter.ledger import Usage
from turnkit.meter.metrics import MeterMetrics

RULES = Path(__file__).resolve().parents[2] / "monitoring" / "turnkit-usage-alerts.yml"


def exposition(node: str = "turn-1", region: str = "eu", spend: float = 60.0, projected: float = 130.0) -> str:
    m = MeterMetrics(node, region, budget=100.0)
    m.count(Usage("2026-11-15", "alice", client_rx=10, client_tx=20, peer_rx=30, peer_tx=40, started=1, ended=1))
    m.live.labels(**m.labels).set(3)
    m.spend.labels(**m.labels).set(spend)
    m.projected.labels(**m.labels).set(projected)
    m.buffered.labels(**m.labels).set(0)
    return generate_latest(m.registry).decode()


def families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)}


def meter_names() -> set[str]:
    return {s[0] for samples in families(exposition()).values() for s in samples if not s[0].endswith("_created")}


def test_metrics_have_node_region_labels_and_no_user() -> None:
    text = exposition()
    assert "alice" not in text
    fams = families(text)
    relayed = {s[1]["direction"]: s[2] for s in fams["turnkit_meter_relayed_bytes"] if s[0].endswith("_total")}
    assert relayed == {"from_client": 10, "to_client": 20, "from_peer": 30, "to_peer": 40}
    labels = {k for samples in fams.values() for _, lab, _ in samples for k in lab}
    assert labels == {"node", "region", "direction"}
    assert ("turnkit_meter_live_allocations", {"node": "turn-1", "region": "eu"}, 3.0) in fams[
        "turnkit_meter_live_allocations"
    ]


def test_promtool_check_usage_rules() -> None:
    proc = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 3 rules found" in proc.stdout


def _series(text: str, steps: int) -> list[dict[str, str]]:
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out.append({"series": f"{s.name}{{{labels}}}", "values": f"{s.value:g}x{steps}"})
    return out


def test_projected_over_budget_fires_and_under_budget_does_not(tmp_path: Path) -> None:
    """Two nodes of eu each project $65 (sum $130 > $100 budget); us projects $40 of its $100."""
    steps = 12
    series = (
        _series(exposition("turn-1", "eu", 30.0, 65.0), steps)
        + _series(exposition("turn-2", "eu", 30.0, 65.0), steps)
        + _series(exposition("turn-1", "us", 20.0, 40.0), steps)
    )
    series = list({s["series"]: s for s in series}.values())  # the budget series is shared per region
    doc = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "5m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "TurnkitRegionProjectedOverBudget", "exp_alerts": []},
                    {
                        "eval_time": "40m",
                        "alertname": "TurnkitRegionProjectedOverBudget",
                        "exp_alerts": [
                            {
                                "exp_labels": {"region": "eu", "severity": "warning"},
                                "exp_annotations": {
                                    "summary": "Region eu is projected to spend 130.00 this month, over its budget",
                                    "description": "At this month's rate the relay egress bill passes [quotas] region_monthly_budget; once spend reaches it, the region stops handing out relays. See `turnkit usage --region eu --by user --top 10`.",
                                },
                            }
                        ],
                    },
                    {"eval_time": "40m", "alertname": "TurnkitRegionOverBudget", "exp_alerts": []},
                    {"eval_time": "40m", "alertname": "TurnkitMeterBacklog", "exp_alerts": []},
                ],
            }
        ],
    }
    spec = tmp_path / "usage_alerts_test.yml"
    spec.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(["promtool", "test", "rules", str(spec)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_rules_only_use_exported_metrics() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    used = {m for r in rules for m in re.findall(r"turnkit_[a-z_]+", r["expr"])}
    assert used and used <= meter_names()
