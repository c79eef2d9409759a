"""`turnkit usage`: grouping, formats, cost from [cost], projection, and one-line errors."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.signaling import RedisProc, redis_running
from turnkit.meter import ledger
from turnkit.meter.central import Central

TOML = '[project]\ndomain = "turn.example.test"\n\n[regions.eu]\nprovider = "aws"\n\n[regions.lab]\nprovider = "static"\nhosts = [{address = "198.18.0.10"}]\n\n[cost.per_gb]\nlab = 0.5\n'


def turnkit(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnkit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def central(tmp_path: Path) -> Iterator[RedisProc]:
    with redis_running(tmp_path / "central") as server:
        store = Central.from_url(server.url)
        today = dt.datetime.now(dt.UTC).date()
        store.apply("turn-1", "eu", "b1", [
            ledger.Usage(today.isoformat(), "alice", client_rx=1_000_000_000, client_tx=2_000_000_000, started=2, relay_seconds=600),
            ledger.Usage(today.isoformat(), "bob", client_rx=10, client_tx=20, started=1, relay_seconds=60),
        ])  # fmt: skip
        store.apply("lab-1", "lab", "b2", [ledger.Usage(today.isoformat(), "alice", peer_tx=4_000_000_000, started=1)])
        old = (today - dt.timedelta(days=40)).isoformat()
        store.apply("turn-1", "eu", "b3", [ledger.Usage(old, "carol", client_tx=5, started=1)])
        yield server


@pytest.fixture
def project(tmp_path: Path, central: RedisProc) -> tuple[Path, dict[str, str]]:
    (tmp_path / "turnkit.toml").write_text(TOML)
    return tmp_path, {**os.environ, "TURNKIT_METER_CENTRAL_URL": central.url}


def test_json_by_user_with_costs_per_region(project: tuple[Path, dict[str, str]]) -> None:
    cwd, env = project
    out = turnkit(cwd, env, "usage", "--json", "--by", "user", "--since", "7d")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    rows = {r["key"]: r for r in doc["rows"]}
    assert set(rows) == {"alice", "bob"}  # carol's day is older than 7 days
    alice = rows["alice"]
    assert (alice["bytes_up"], alice["bytes_down"], alice["egress_bytes"]) == (10**9, 2 * 10**9, 6 * 10**9)
    assert (alice["sessions"], alice["relay_minutes"]) == (3, 10.0)
    assert alice["cost"] == pytest.approx(2 * 0.09 + 4 * 0.5)  # aws default in eu, [cost] per_gb in lab
    assert doc["month"]["spent"] == pytest.approx(2.18, abs=1e-3)
    assert doc["month"]["projected"] >= doc["month"]["spent"]


def test_region_filter_top_and_csv(project: tuple[Path, dict[str, str]]) -> None:
    cwd, env = project
    out = turnkit(cwd, env, "usage", "--csv", "--region", "eu", "--by", "node", "--top", "1", "--since", "7d")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "key,bytes_up,bytes_down,egress_bytes,sessions,relay_minutes,cost",
        "eu/turn-1,1000000010,2000000020,2000000020,3,11.0,0.18",
    ]
    table = turnkit(cwd, env, "usage", "--by", "region", "--since", "2000-01-01")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["region", "up", "down", "sessions", "relay-min", "cost"]
    assert lines[1].split()[0] == "lab" and lines[2].split()[0] == "eu"
    assert lines[-1].startswith("month ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "planet"], "error: --by: must be one of user, node, region, day, got 'planet'"),
        (["--since", "last week"], "error: --since: expected `7d` or a date like 2026-11-01, got 'last week'"),
        (["--region", "mars"], "error: turnkit.toml: regions.mars: no such region (known: eu, lab)"),
    ],
)
def test_bad_input_is_one_line(project: tuple[Path, dict[str, str]], args: list[str], message: str) -> None:
    cwd, env = project
    out = turnkit(cwd, env, "usage", *args)
    assert (out.returncode, out.stdout, out.stderr.strip()) == (2, "", message)


def test_unreachable_store_and_missing_url(tmp_path: Path) -> None:
    (tmp_path / "turnkit.toml").write_text(TOML)
    env = {k: v for k, v in os.environ.items() if k != "TURNKIT_METER_CENTRAL_URL"}
    out = turnkit(tmp_path, env, "usage")
    assert (out.returncode, out.stderr.strip()) == (
        2,
        "error: environment variable `TURNKIT_METER_CENTRAL_URL` is not set (central usage store URL)",
    )
    env["TURNKIT_METER_CENTRAL_URL"] = "redis://:pw-not-shown@127.0.0.1:1/0"
    out = turnkit(tmp_path, env, "usage")
    assert (out.returncode, out.stderr.strip()) == (3, "error: central usage store unreachable (ConnectionError)")
    assert "pw-not-shown" not in out.stderr


def test_prometheus_textfile_is_the_central_aggregate(project: tuple[Path, dict[str, str]]) -> None:
    cwd, env = project
    out = turnkit(cwd, env, "usage", "--by", "region", "--prometheus", str(cwd / "usage.prom"))
    assert out.returncode == 0, out.stderr
    text = (cwd / "usage.prom").read_text()
    assert 'turnkit_usage_month_egress_bytes{region="lab"} 4e+09' in text
    assert 'turnkit_usage_month_spend_dollars{region="eu"} 0.18' in text
    assert "alice" not in text
