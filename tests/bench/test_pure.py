"""The runner's pure parts: statistics, verdicts, parsers of the load tools' output, Markdown and doc updates."""

from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

from bench import creds, env, latency, netns, profile, relay, report
from bench.stats import Target, Verdict, fmt, median, percentile, ratio


def test_median_of_rounds() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert math.isnan(median([]))


def test_percentile_nearest_rank() -> None:
    samples = [float(x) for x in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile(samples, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match=re.escape("q must be within 0..100, got 101")):
        percentile(samples, 101)


def test_ratio_handles_missing_sides() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(math.nan, 1.0))


@pytest.mark.parametrize(
    ("op", "limit", "value", "met", "mark"),
    [
        (">=", 1.5, 1.6, True, "✓"),
        (">=", 1.5, 1.4, False, "✗"),
        ("<=", 10, 10, True, "✓"),
        ("<=", 10, math.nan, None, "–"),
    ],
)
def test_verdicts(op: str, limit: float, value: float, met: bool | None, mark: str) -> None:
    v = Verdict(Target("x", op, limit, "ms"), value)
    assert v.met is met
    assert v.mark == mark


def test_target_description_and_number_format() -> None:
    assert Target("x", ">=", 1.5, "×").describe() == "≥ 1.5 ×"
    assert Target("x", "<=", 20, "KiB").describe() == "≤ 20 KiB"
    assert fmt(43210.4) == "43,210"
    assert fmt(12.0) == "12"
    assert fmt(0.81234) == "0.812"
    assert fmt(math.nan) == "n/a"


def test_parse_load_result_line_and_cpu_per_message() -> None:
    out = (
        '{"event":"start"}\n{"event":"stop"}\n'
        '{"proto":"turnkit","pairs":50,"seconds":8,"messages":400000,"msgs_per_s":50000,'
        '"rtt_p50_ms":1.5,"rtt_p99_ms":7.25,"client_cpu_s":7.2}\n'
    )
    load = relay.parse_load(out)
    assert load == relay.Load(50000.0, 1.5, 7.25, 400000.0, 8.0, 7.2)
    measured = replace(load, server_cpu_s=6.0)
    assert measured.server_us_per_msg == pytest.approx(15.0)  # 6 s of CPU over 400,000 messages
    assert measured.client_us_per_msg == pytest.approx(18.0)
    assert measured.server_share == pytest.approx(0.75) and measured.client_share == pytest.approx(0.9)
    assert math.isnan(load.server_us_per_msg)  # no /proc sample: no figure rather than a made-up one
    idle = relay.parse_load('{"proto":"turnkit","msgs_per_s":0,"rtt_p99_ms":null}')
    assert idle.msgs_per_s == 0 and math.isnan(idle.p99_ms) and math.isnan(idle.server_us_per_msg)
    with pytest.raises(RuntimeError, match="printed no result"):
        relay.parse_load('{"event":"start"}\nError: connect ECONNREFUSED')


def test_relay_row_ratios_against_the_reference() -> None:
    ref = relay.Load(20000.0, 3.0, 9.0, 160000.0, 8.0, 6.0, 4.0)  # 25 µs/msg
    ours = relay.Load(40000.0, 1.0, 4.0, 320000.0, 8.0, 7.0, 4.0)  # 12.5 µs/msg
    row = relay._row("turnkit (memory)", ours, ref, [ours, ref])
    assert row[:5] == ("turnkit (memory)", "40,000", "12.5", "0.5×", "2×")
    assert row[7:] == ("50%", "88%", "21.9", "40,000 / 20,000")


WRK = """\
Running 8s test @ http://127.0.0.1:8080/healthz
  1 threads and 32 connections
  Latency Distribution
     50%  850.00us
     75%    1.20ms
     90%    2.00ms
     99%    4.51ms
  98765 requests in 8.00s, 12.34MB read
Requests/sec:  12345.67
Transfer/sec:      1.54MB
"""


def test_parse_wrk_output() -> None:
    w = creds.parse_wrk(WRK)
    assert w.rps == 12345.67
    assert w.p50_ms == pytest.approx(0.85)
    assert w.p99_ms == pytest.approx(4.51)
    with pytest.raises(RuntimeError, match="wrk: 17 non-2xx answers"):
        creds.parse_wrk(WRK + "  Non-2xx or 3xx responses: 17\n")
    with pytest.raises(RuntimeError, match="no Requests/sec"):
        creds.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def test_lua_script_sets_bearer_header() -> None:
    assert creds.lua_script("a.b.c") == 'wrk.headers["Authorization"] = "Bearer a.b.c"\n'


COLLAPSED = """\
run (asyncio/runners.py:190);_dispatch (/work/main/signaling/app.py:120);on_frame (/work/main/signaling/hub.py:42) 6
run (asyncio/runners.py:190);_dispatch (/work/main/signaling/app.py:121);dumps (json/__init__.py:231) 3
run (asyncio/runners.py:190) 1
garbage line
"""


def test_profile_collapsed_stacks_by_function() -> None:
    own, inclusive, total = profile.parse_collapsed(COLLAPSED)
    assert total == 10
    assert own["on_frame (signaling/hub.py)"] == 6
    assert inclusive["_dispatch (signaling/app.py)"] == 9  # two lines of one function are one row
    assert inclusive["run (asyncio/runners.py)"] == 10
    rows = profile.top(inclusive, total, 5, contains="signaling/")
    assert [(f.name, f.share) for f in rows] == [
        ("_dispatch (signaling/app.py)", 0.9),
        ("on_frame (signaling/hub.py)", 0.6),
    ]
    text = profile.summary(COLLAPSED, "the server", "signaling/")
    assert "- 60.0% `on_frame (signaling/hub.py)`" in text
    assert "event loop in C" in text


def _section(key: str, value: float) -> report.Section:
    return report.Section(
        key,
        f"Title {key}",
        "How it was measured.",
        tables=[report.Table(("server", "msgs/s"), (("a|b", "1"),))],
        verdicts=[Verdict(Target("ratio", ">=", 1.5, "×", "issue 6"), value, "detail")],
    )


def test_markdown_section_and_tables() -> None:
    section = _section("relay", 2.0)
    section.notes.append("reason: wrong transaction ID\x00")
    text = report.render_section(section, "_Run: x._")
    assert "reason: wrong transaction ID\n" in text  # control characters from servers' reason phrases dropped
    assert text.startswith("<!-- bench:relay:start -->\n## Title relay\n\n_Run: x._\n\nHow it was measured.")
    assert "| ratio | 2 × (detail) | ≥ 1.5 × | ✓ | issue 6 |" in text
    assert "| a\\|b | 1 |" in text
    assert text.endswith("<!-- bench:relay:end -->")


def test_update_replaces_one_section_and_keeps_the_rest() -> None:
    order = ["relay", "capacity", "creds"]
    header = "_Run: x._"
    doc = report.update("", {k: report.render_section(_section(k, 2.0), header) for k in ("relay", "creds")}, order)
    assert doc.startswith(report.PREAMBLE)
    assert doc.index("bench:relay:start") < doc.index("bench:creds:start")
    doc = doc.replace("How it was measured.", "Hand-edited text.", 1)  # the relay section's text
    doc2 = report.update(doc, {"capacity": report.render_section(_section("capacity", 1.0), header)}, order)
    assert doc2.index("bench:relay:end") < doc2.index("bench:capacity:start") < doc2.index("bench:creds:start")
    assert "Hand-edited text." in doc2
    assert "| ratio | 1 × (detail) | ≥ 1.5 × | ✗ | issue 6 |" in doc2
    doc3 = report.update(doc2, {"relay": report.render_section(_section("relay", 3.0), header)}, order)
    assert "Hand-edited text." not in doc3
    assert doc3.count("bench:relay:start") == 1
    assert "| ratio | 3 × (detail) |" in doc3


def test_run_header_names_command_machine_and_versions() -> None:
    text = report.run_header(
        "python -m bench", "2026-01-01 00:00 UTC", 2, {"python": "3.11.7", "node": "20"}, "shared."
    )
    assert (
        text == "_Run: `python -m bench` on 2026-01-01 00:00 UTC; nproc 2; python 3.11.7, node 20._\n_Machine: shared._"
    )


def test_lockfile_pins_what_package_json_asks_and_the_header_names_it() -> None:
    bench_dir = Path(env.__file__).parent
    wanted = json.loads((bench_dir / "package.json").read_text())["dependencies"]
    assert env.node_versions() == wanted  # exact pins: npm ci installs what the lockfile says
    assert env.node_versions(bench_dir / "no-such-lock.json") == dict.fromkeys(env.NODE_PACKAGES, "unknown")
    assert "socket.io" in env.versions()
    assert env.pinning(0, 1) == "servers pinned to core 0, load generators to core 1 (taskset)"
    assert env.pinning(None, None).startswith("no core pinning")


def test_namespace_addresses_stay_in_the_benchmark_range() -> None:
    host, inside = netns.plan(4)
    assert (host, inside) == ("198.19.242.1", ("198.19.242.2", "198.19.242.3", "198.19.242.4", "198.19.242.5"))
    with pytest.raises(ValueError, match=re.escape("10.0.0.0/24 is outside the benchmark range 198.18.0.0/15")):
        netns.plan(2, ipaddress.ip_network("10.0.0.0/24"))
    with pytest.raises(ValueError, match="has room for 1 namespace addresses, not 2"):
        netns.plan(2, ipaddress.ip_network("198.18.0.0/30"))


def test_latency_coturn_denies_the_benchmark_range_except_its_own_subnet() -> None:
    ranges = latency.denied_except(netns.SUBNET)
    assert "198.18.0.0-198.19.255.255" not in ranges
    assert "198.18.0.0-198.18.255.255" in ranges and "198.19.243.0-198.19.243.255" in ranges
    assert "198.19.240.0-198.19.241.255" in ranges
    assert not any(r.startswith("198.19.242.") for r in ranges)  # the hole
    assert "127.0.0.0-127.255.255.255" in ranges and "10.0.0.0-10.255.255.255" in ranges
