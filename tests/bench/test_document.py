"""The whole of docs/benchmarks.md is generated: section order, kept foreign sections, the derived gaps section,
and the readers of the issue-12 tests' printed figures. Pure text in, text out."""

from __future__ import annotations

import math
from pathlib import Path

from bench import gaps, ops, report
from bench.stats import Target, Verdict


def _marked(key: str, body: str) -> str:
    return f"<!-- bench:{key}:start -->\n## {key} title\n\n{body}\n<!-- bench:{key}:end -->"


PROFILED = """\
| target | measured | goal | met | from |
| --- | --- | --- | --- | --- |
| relay µs/msg ratio | 1.06 × (53.3 vs 50.4 µs/msg) | ≤ 0.67 × | ✗ | issue 13 |
| relay p99 | 8 ms | ≤ 10 ms | ✓ | issue 13 |
| msgs/s ratio | 1,320 msgs/s | ≥ 1,500 msgs/s | ✗ | issue 13 |

**Profile** of the server (py-spy, 10 non-idle samples at 200 Hz):

Top functions by own time:

- 18.8% `Runner.run (asyncio/runners.py)` — event loop in C
- 14.8% `JSONEncoder.iterencode (json/encoder.py)`
- 9.5% `Connection.send_data (websockets/asyncio/connection.py)`
- 9.3% `JSONDecoder.raw_decode (json/decoder.py)`
"""


def test_update_orders_sections_keeps_foreign_ones_and_drops_retired_text() -> None:
    old = "\n\n".join(
        [
            "# Benchmarks\n\nAn old preamble.",
            _marked("creds", "old creds"),
            "## Notes kept by hand\n\nstays after creds",
            _marked("lab", "the fleet lab's own section"),
            _marked("relay", "old relay"),
            "## Since this run: the hot-path changes\n\nhand-written figures",
            "## Operations under change (issue 12)\n\nhand-written table",
        ]
    )
    doc = report.update(old, {"relay": _marked("relay", "new relay"), "meter": _marked("meter", "meter")})
    assert doc.startswith(report.PREAMBLE.rstrip("\n"))
    assert "An old preamble." not in doc
    assert "new relay" in doc and "old relay" not in doc and "old creds" in doc
    assert "Since this run" not in doc and "hand-written" not in doc
    order = ["relay title", "creds title", "Notes kept by hand", "lab title", "meter title"]
    assert [doc.index(t) for t in order] == sorted(doc.index(t) for t in order)
    assert doc.count("bench:lab:start") == 1
    assert report.update(doc, {}) == doc  # idempotent


def test_update_keeps_sections_of_other_runners_it_does_not_know() -> None:
    old = report.update("", {"relay": _marked("relay", "r")}) + "\n" + _marked("elsewhere", "kept") + "\n"
    doc = report.update(old, {"relay": _marked("relay", "r2")})
    assert "kept" in doc and doc.index("relay title") < doc.index("elsewhere title")


def test_gap_text_for_both_directions_and_unmeasured_figures() -> None:
    assert gaps.gap_text("1.06 × (53.3 vs 50.4 µs/msg)", "≤ 0.67 ×") == "0.39 × over, 58% of the goal"
    assert gaps.gap_text("1,320 msgs/s", "≥ 1,500 msgs/s") == "180 msgs/s short, 12% of the goal"
    assert gaps.gap_text("n/a", "≤ 10 ms") == "–"


def test_gaps_section_lists_every_miss_with_the_profiles_top_frames() -> None:
    doc = report.update("", {"relay": _marked("relay", PROFILED), "creds": _marked("creds", "No verdicts here.")})
    found = gaps.collect(doc)
    assert [(g.target, g.gap) for g in found] == [
        ("relay µs/msg ratio", "0.39 × over, 58% of the goal"),
        ("msgs/s ratio", "180 msgs/s short, 12% of the goal"),
    ]
    assert found[0].frames == (
        "18.8% `Runner.run (asyncio/runners.py)`; 14.8% `JSONEncoder.iterencode (json/encoder.py)`; "
        "9.5% `Connection.send_data (websockets/asyncio/connection.py)`"
    )
    section = gaps.render(doc, "_Derived._")
    assert section.startswith("<!-- bench:gaps:start -->\n## Gaps and where the time goes\n\n_Derived._")
    assert "| relay title | relay µs/msg ratio | 1.06 × (53.3 vs 50.4 µs/msg) | ≤ 0.67 × |" in section
    doc = report.update(doc, {gaps.KEY: section})
    assert len(gaps.collect(doc)) == 2  # the gaps section does not count itself
    assert "Every goal in this document is met." in gaps.render(report.update("", {}), "")


def test_gaps_without_a_profile_say_so() -> None:
    body = PROFILED.split("\n\n**Profile**")[0]
    assert gaps.collect(report.update("", {"call": _marked("call", body)}))[0].frames == "no profile in this section"


def test_ops_readers_take_the_tests_printed_figures() -> None:
    rolling = (
        "\n[memory] rooms=50 resumes=100 resume latency median=368 ms p95=500 ms max=700 ms; "
        "messages required=400 delivered=400 sent=420\n"
        "\n[redis] rooms=50 resumes=100 resume latency median=900 ms p95=1200 ms max=1400 ms; "
        "messages required=300 delivered=300 sent=310\n"
    )
    read = {op.test.split("::")[0]: op.read for op in ops.OPS}
    r = read["tests/signaling/test_rolling.py"](rolling, True)
    assert r.value == 0
    assert (
        r.detail
        == "700 messages had to arrive; memory: 50 rooms, resume median 368 ms; redis: 50 rooms, resume median 900 ms"
    )
    assert math.isnan(read["tests/signaling/test_rolling.py"](rolling, False).value)
    sentinel = "sentinel failover: promoted 2.10s after the kill, first relay 2.60s after it, largest relay gap 3.05s, "
    assert read["tests/signaling/test_sentinel.py"](sentinel, True).value == 3.05
    restart = "[ice restart] call recovered through node 2 7.3s after node 1 was killed"
    assert read["tests/signaling/test_browser_ice_restart.py"](restart, True).value == 7.3
    rotation = "rotation: 120 allocations, 40 packets per direction over 10 relays"
    assert read["tests/ops/test_rotation.py"](rotation, True).value == 0
    assert math.isnan(read["tests/ops/test_rotation.py"](rotation, False).value)
    assert math.isnan(read["tests/signaling/test_sentinel.py"]("nothing", True).value)
    assert Verdict(ops.OPS[0].target, 0.0).mark == "✓" and Verdict(ops.OPS[2].target, 12.0).mark == "✗"
    assert isinstance(ops.OPS[0].target, Target)


def test_ops_tests_exist_where_the_section_runs_them() -> None:
    root = Path(ops.__file__).resolve().parents[1]
    for op in ops.OPS:
        assert (root / op.test.split("::")[0]).is_file(), op.test
        assert ops.command(op.test)[-1] == op.test


def test_gaps_pick_the_profile_that_fits_the_goal() -> None:
    two = (
        PROFILED
        + "\n**Profile** of one of the two Redis-backed processes (py-spy, 5 non-idle samples at 200 Hz):\n\n"
        + "Top functions by own time:\n\n- 40.0% `StreamWriter.writelines (asyncio/streams.py)`\n"
    )
    assert gaps.top_frames(two, "turnkit Redis, 2 processes, msgs/s ÷ reference") == (
        "40.0% `StreamWriter.writelines (asyncio/streams.py)`"
    )
    assert gaps.top_frames(two, "relay µs/msg ratio").startswith("18.8% `Runner.run")
